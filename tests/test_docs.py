"""The documentation points at what exists: every relative link of README.md, BENCHMARKS.md
and docs/*.md names a file of the repository (and, with ``#anchor``, a heading of it), and
every ``--flag`` a page gives a command (in a code block or in backticks) is one its program
takes. No TensorFlow: the parsers are built from the declarations, or read from the source."""

from __future__ import annotations

import ast
import glob
import os
import re
import shlex

from library.config import Schema, build_arg_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PAGES = ["README.md", "BENCHMARKS.md", *(os.path.relpath(path, ROOT) for path in DOCS)]

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
FLAG = re.compile(r"^--([A-Za-z][\w-]*)")

# Programs of this repository whose flags are read from their source (their ``add_argument``
# calls): importing them would load TensorFlow.
SOURCES = {
    "convert_dataset.py": "convert_dataset.py",
    "library.cli.data_service": "library/cli/data_service.py",
}
# Programs that are not this repository's: the flags the pages use, checked by hand against
# their ``--help`` (TensorFlow's saved_model_cli, TensorBoard, MLflow, pytest).
KNOWN = {
    "saved_model_cli": {"all", "dir"},
    "tensorboard": {"logdir"},
    "mlflow": {"backend-store-uri"},
    "pytest": {"durations"},
}
# Flags named alone in backticks (no program in the span) that belong to another program than
# run.py: the page's sentence says which. ``--key`` is the placeholder of configuration.md.
ALONE = {
    "max_edge": "convert_dataset.py",
    "strict": "convert_dataset.py",
    "num_workers": "convert_dataset.py",
    "overwrite": "convert_dataset.py",
    "wait_secs": "library.cli.data_service",
    "work_dir": "library.cli.data_service",
    "worker_timeout_secs": "library.cli.data_service",
    "durations": "pytest",
    "key": None,
}
# Package of the project each run.py serves (the root run.py: project/).
RUN_PY = {
    "run.py": "project",
    "examples/regression/run.py": "examples.regression",
    "examples/digit_boxes/run.py": "examples.digit_boxes",
    "examples/segmentation/run.py": "examples.segmentation",
    "examples/text_classifier/run.py": "examples.text_classifier",
    "examples/gan/run.py": "examples.gan",
    "examples/distillation/run.py": "examples.distillation",
    "tests/projects/classifier/run.py": "tests.projects.classifier",
    "tests/projects/regression/run.py": "tests.projects.regression",
}
# ``python -m examples.photo_patches ARGS`` hands its arguments to run.py (set ``patches``).
MODULES_TO_RUN_PY = {"examples.photo_patches": "project"}
SEPARATORS = {"&&", "||", "|", ";", "&", "(", ")"}


def read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as stream:
        return stream.read()


def split_page(text: str) -> tuple[str, list[str]]:
    """The prose (code blocks blanked, lines kept) and the code blocks of a page."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append("\n".join(block))
                block = None
            prose.append("")
        elif block is not None:
            block.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links and code marks dropped), lower case,
    punctuation dropped (letters, digits, ``_`` and ``-`` kept), each space a hyphen."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings (a repeated one gets ``-1``, ``-2``... as on GitHub)."""
    prose, _ = split_page(text)
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """The targets of a page's links and images (in prose, not in code)."""
    prose, _ = split_page(text)
    prose = CODE_SPAN.sub("", prose)
    return [match.group(1) for match in LINK.finditer(prose)]


def broken_links(page: str, text: str) -> list[str]:
    """Each relative link of ``page`` whose file or heading does not exist."""
    broken = []
    folder = os.path.dirname(os.path.join(ROOT, page))
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if not path:  # a heading of this page
            if anchor not in anchors(text):
                broken.append(f"{page}: {target}: no such heading in this page")
            continue
        full = os.path.normpath(os.path.join(folder, path))
        name = os.path.relpath(full, ROOT)
        if not os.path.exists(full):
            broken.append(f"{page}: {target}: no file {name}")
        elif anchor and (not name.endswith(".md") or anchor not in anchors(read(name))):
            broken.append(f"{page}: {target}: no heading #{anchor} in {name}")
    return broken


# -- flags ---------------------------------------------------------------------------------


def run_py_flags(package: str) -> set[str]:
    """The flags of run.py serving ``package``: the selection flags and one per key."""
    module = __import__(package, fromlist=["HYPERPARAMETERS"])
    schema = Schema(module.HYPERPARAMETERS, getattr(module, "RUN_OPTIONS", ()))
    parser = build_arg_parser(schema)
    return {
        option[2:]
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def source_flags(path: str) -> set[str]:
    """The ``--flags`` a program's source declares with ``add_argument`` (each subcommand's)."""
    tree = ast.parse(read(path), path)
    return {
        node.args[0].value[2:]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).startswith("--")
    }


_FLAGS: dict[str, set[str]] = {}


def flags_of(program: str) -> set[str] | None:
    """The flags ``program`` takes (a key of RUN_PY's values, SOURCES, KNOWN, or a bench
    script's path); None for a program the test does not know."""
    if program not in _FLAGS:
        if program in RUN_PY.values():
            _FLAGS[program] = run_py_flags(program)
        elif program in SOURCES:
            _FLAGS[program] = source_flags(SOURCES[program])
        elif program in KNOWN:
            _FLAGS[program] = KNOWN[program]
        elif program.startswith("bench/") and os.path.exists(os.path.join(ROOT, program)):
            _FLAGS[program] = source_flags(program)
        else:
            return None
    return _FLAGS[program]


def program_at(tokens: list[str], index: int) -> tuple[str | None, int]:
    """The program a command's token at ``index`` starts (and the index after its name), or
    ``(None, index + 1)``."""
    token = tokens[index]
    name = token.removeprefix("./")
    if name in RUN_PY:
        return RUN_PY[name], index + 1
    if name.endswith("/run.py"):
        return name, index + 1  # a run.py RUN_PY does not list: unknown
    if name.endswith("convert_dataset.py"):
        return "convert_dataset.py", index + 1
    if name.startswith("bench/") and name.endswith(".py"):
        return name, index + 1
    if name == "-m" and index + 1 < len(tokens):
        module = tokens[index + 1]
        if module in MODULES_TO_RUN_PY:
            return MODULES_TO_RUN_PY[module], index + 2
        if module in SOURCES:
            return module, index + 2
        return f"-m {module}", index + 2
    base = os.path.basename(name)
    if base in KNOWN:
        return base, index + 1
    return None, index + 1


def split_comment(line: str) -> tuple[str, str]:
    """A shell line's code and its comment (a ``#`` after a space, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, ""


def tokenize(code: str) -> list[str]:
    lexer = shlex.shlex(code, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in a transcript's output: words will do
        return code.split()


def command_flags(line: str) -> list[tuple[str | None, str]]:
    """``(program, flag)`` for each ``--flag`` of one shell line; program None for a flag
    before any program this test knows (a flag named alone). A comment's flags are the
    last program's."""
    code, comment = split_comment(line)
    found, program = [], None
    tokens = tokenize(code)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in SEPARATORS:
            program, index = None, index + 1
            continue
        started, after = program_at(tokens, index)
        if started is not None and (program is None or started != program):
            program, index = started, after
            continue
        match = FLAG.match(token)
        if match:
            found.append((program, match.group(1)))
        index += 1
    for word in comment.split():
        match = FLAG.match(word)
        if match and program is not None:
            found.append((program, match.group(1)))
    return found


def logical_lines(block: str) -> list[str]:
    """A code block's lines, those continued with a backslash joined."""
    lines, current = [], ""
    for line in block.splitlines():
        code, _ = split_comment(line)
        if code.rstrip().endswith("\\"):
            current += code.rstrip()[:-1] + " "
        else:
            lines.append(current + line)
            current = ""
    if current:
        lines.append(current)
    return lines


def page_flags(text: str) -> list[tuple[str | None, str, str]]:
    """``(program, flag, where)`` of every ``--flag`` in a page's code blocks and backticks;
    program None for a flag named alone in backticks."""
    prose, blocks = split_page(text)
    found = []
    for block in blocks:
        for line in logical_lines(block):
            found += [(program, flag, line.strip()) for program, flag in command_flags(line)]
    for span in CODE_SPAN.findall(prose):
        span = " ".join(span.split())
        if "--" in span:
            found += [(program, flag, span) for program, flag in command_flags(span)]
    return found


def wrong_flags(page: str, text: str) -> list[str]:
    """Each flag of ``page`` that its program does not take (or whose program is unknown)."""
    wrong = []
    for program, flag, where in page_flags(text):
        if program is None:  # named alone: run.py's, or a program ALONE names
            if flag in flags_of("project"):
                continue
            if flag in ALONE:
                owner = ALONE[flag]
                if owner is None or flag in (flags_of(owner) or set()):
                    continue
            wrong.append(f"{page}: --{flag} (in {where!r}) is not a flag of run.py")
            continue
        known = flags_of(program)
        if known is None:
            wrong.append(f"{page}: {program}: a program this test does not know (in {where!r})")
        elif flag not in known:
            wrong.append(f"{page}: --{flag} is not a flag of {program} (in {where!r})")
    return wrong


# -- the tests -----------------------------------------------------------------------------


def test_every_relative_link_names_a_file_and_a_heading():
    assert [line for page in PAGES for line in broken_links(page, read(page))] == []


def test_every_flag_of_a_command_is_one_its_program_takes():
    assert [line for page in PAGES for line in wrong_flags(page, read(page))] == []


def test_the_alone_flags_belong_to_their_programs():
    for flag, owner in ALONE.items():
        if owner is not None and owner not in KNOWN:
            assert flag in flags_of(owner), f"--{flag} is no longer a flag of {owner}"


def test_the_checks_catch_a_broken_link_and_a_wrong_flag():
    page = "docs/training.md"
    good = "[a](data.md) [b](../README.md#quick-start) ![c](demo_loss.png) [d](#resume)\n# Resume\n"
    assert broken_links(page, good) == []
    for bad in ("[a](nodata.md)", "[b](../README.md#no-such-heading)", "![c](none.png)"):
        assert len(broken_links(page, good + bad)) == 1, bad
    assert wrong_flags(page, "```bash\npython run.py --config_set demo --train_steps 4\n```") == []
    for bad in (
        "```bash\npython run.py --config_set demo \\\n    --no_such_key 4\n```",
        "`python run.py --mode evaluate --chekpoint best`",
        "`--no_such_key 3`",
        "`python convert_dataset.py --dataset_dir a --max_edges 3`",
        "`python -m library.cli.data_service worker --prot 5051`",
        "`.venv/bin/python bench/train_loop.py --stepz 60`",
        "`frobnicate --all`",
    ):
        assert len(wrong_flags(page, bad)) == 1, bad


def test_headings_become_github_anchors():
    assert (
        slug("Input pipeline: `bench/input_pipeline.py`") == "input-pipeline-benchinput_pipelinepy"
    )
    assert slug("Searches over several hyperparameters (Optuna)") == (
        "searches-over-several-hyperparameters-optuna"
    )
    assert slug("Recorders: the project's code after each log and evaluation") == (
        "recorders-the-projects-code-after-each-log-and-evaluation"
    )
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}
