#!/usr/bin/env python3
"""Image folders to sharded TFRecords.

    python convert_dataset.py --dataset_dir dataset/train --tfrecord_filename train \
        --tfrecord_dir dataset/train --max_edge 384
"""

import sys

from library.config import ConfigError, OneLineParser
from library.vision.convert import ConvertError, ConvertOptions, convert, summarize


def parse_args(argv):
    parser = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset_dir", required=True, help="folder of <class>/<image> folders")
    parser.add_argument("--tfrecord_filename", required=True, help="shard name prefix, e.g. train")
    parser.add_argument("--tfrecord_dir", required=True, help="output folder")
    parser.add_argument(
        "--max_edge", type=int, default=384, help="longer edge limit (default: 384)"
    )
    parser.add_argument("--num_shards", type=int, default=0, help="shards (default: auto)")
    parser.add_argument("--labels_file", default="", help="labels.txt of an earlier conversion")
    parser.add_argument("--num_workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the record shuffle")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--strict", action="store_true", help="fail on any unreadable image")
    return ConvertOptions(**vars(parser.parse_args(argv)))


def main(argv):
    try:
        options = parse_args(argv)
        manifest = convert(options)
    except (ConfigError, ConvertError) as error:
        print(f"convert_dataset.py: error: {error}", file=sys.stderr)
        return 2
    print(summarize(manifest, options.tfrecord_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
