"""Which files a pattern names, and whether they are what they should be, in one line when
not: globs, folders and comma lists; TFRecord files recognised by their framing.

All file access goes through ``tf.io.gfile``, so ``gs://`` or HDFS patterns work unchanged.
"""

from __future__ import annotations

import os

import tensorflow as tf

from library.base.errors import InputError


def match_files(file_pattern: str) -> list[str]:
    """The sorted files matching a glob pattern; an error naming the pattern if none."""
    try:
        files = sorted(tf.io.gfile.glob(file_pattern))
    except tf.errors.OpError as error:
        raise InputError(f"{file_pattern}: cannot list files ({error.message})") from None
    if not files:
        raise InputError(f"{file_pattern}: no files match (fix the pattern, or write the files)")
    return files


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image?)"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file (a compressed TFRecord? not supported here)"),
)


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def looks_like_tfrecord(head: bytes) -> bool:
    """Whether a file's first 12 bytes frame a TFRecord: an 8-byte length and its masked
    CRC-32C (what TensorFlow checks first). An empty file is an empty TFRecord file."""
    if not head:
        return True
    return len(head) >= 12 and int.from_bytes(head[8:12], "little") == _masked_crc32c(head[:8])


def what_it_is(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a TFRecord file"


def not_tfrecord(file_pattern: str) -> tuple[str, str] | None:
    """``(path, what it seems to be)`` of the first file of ``file_pattern`` that does not
    start like a TFRecord file; None when all do."""
    for path in match_files(file_pattern):
        with tf.io.gfile.GFile(path, "rb") as stream:
            head = stream.read(12)
        if not looks_like_tfrecord(head):
            return path, what_it_is(head)
    return None


def check_tfrecords(file_pattern: str) -> list[str]:
    """The files of ``file_pattern``, each checked to start like a TFRecord file.

    Raises:
        InputError: naming the first file that is not one, with what it seems to be.
    """
    files = match_files(file_pattern)
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as stream:
            head = stream.read(12)
        if not looks_like_tfrecord(head):
            raise InputError(
                f"{path}: {what_it_is(head)}, not TFRecord shards; write records with "
                "library.data.records.RecordWriter (convert_dataset.py does, for image "
                "folders) and point the pattern at its NAME-*.tfrecord files"
            )
    return files


def expand_files(spec: str, recursive: bool = False) -> list[str]:
    """The files named by a glob, a folder or a comma-separated list of either, in order and
    without repeats. A folder gives the files directly in it (hidden ones aside), and with
    ``recursive`` those of its subfolders too (hidden folders aside).

    Raises:
        InputError: naming the part of ``spec`` that matches nothing.
    """
    files: list[str] = []
    seen: set[str] = set()  # a set: a folder of 100,000 images is no quadratic search
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if tf.io.gfile.isdir(part):
            found, subfolders = _folder_files(part, recursive)
            if not found:
                unread = " (its subfolders are read with predict_recursive: true)"
                raise InputError(f"{part}: no files in it{unread if subfolders else ''}")
        else:
            found = match_files(part)
        for path in found:
            if path not in seen:
                seen.add(path)
                files.append(path)
    if not files:
        raise InputError(f"{spec!r}: names no files (a glob, a folder or a comma list)")
    return files


def _folder_files(folder: str, recursive: bool) -> tuple[list[str], bool]:
    """The sorted files of ``folder`` (and of its subfolders when ``recursive``), and whether
    it has subfolders."""
    found, subfolders = [], False
    for directory, names, leaves in tf.io.gfile.walk(folder):
        subfolders = subfolders or bool(names)
        # In place: walk goes on into what is left of ``names`` (hidden ones are not data).
        names[:] = [n for n in names if not n.startswith(".")] if recursive else []
        found += [os.path.join(directory, n) for n in leaves if not n.startswith(".")]
    return sorted(found), subfolders
