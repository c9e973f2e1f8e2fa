"""The fenced code blocks of the documentation, and checks of the commands they show against
the real command-line parsers (thinct's own, the argparse of the repository's scripts, pip's
extras and pytest's markers), for tests/docs/test_doc_blocks.py.

A block is known by its page and its first line (without a trailing comment, cut at about
70 characters), so that it keeps its name when text is added around it; a block whose key
repeats one above it on the same page gets `` #2``, `` #3``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import runpy
import shlex
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
import typer

import thinct.cli.app
from helpers.paths import ROOT

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its page, key (first line), language (first word of the info
    string, "" when none), text (indentation of the fence removed) and line number."""

    page: str
    key: str
    language: str
    text: str
    line: int


def doc_pages() -> list[str]:
    """The pages whose blocks must be exercised: the README, the developer guide and every
    page under docs/, including pages added later."""
    docs = sorted(path.relative_to(ROOT).as_posix() for path in ROOT.glob("docs/**/*.md"))
    return ["README.md", "DEVELOPERS.md", *docs]


def _fenced(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, info string, lines) of each fenced block, by CommonMark's rule: the block
    ends at a fence of the same character at least as long."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        start, body = index, []
        while index < len(lines) and not closing.match(lines[index]):
            body.append(_dedent(lines[index], indent))
            index += 1
        index += 1
        yield start, opening["info"].strip(), body


def _dedent(line: str, indent: int) -> str:
    """A block line without the indentation of its fence (a list item's, in the README)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def page_blocks(page: str) -> list[Block]:
    """The fenced blocks of one page, in order, with their keys."""
    seen: dict[str, int] = {}
    blocks = []
    for line, info, body in _fenced((ROOT / page).read_text(encoding="utf-8")):
        first = _short(without_comment(next((t for t in body if t.strip()), "")))
        seen[first] = seen.get(first, 0) + 1
        key = first if seen[first] == 1 else f"{first} #{seen[first]}"
        language = info.split()[0] if info else ""
        blocks.append(Block(page, key, language, "\n".join(body) + "\n", line))
    return blocks


def without_comment(line: str) -> str:
    """A line without its trailing ``# comment`` (a ``#`` after a space, followed by one)."""
    return re.sub(r"\s#\s.*$", "", line).strip()


def _short(line: str, width: int = 70) -> str:
    """The line, cut at the last space within ``width`` characters when it is longer."""
    return line if len(line) <= width else line[:width].rsplit(" ", 1)[0]


def all_blocks() -> dict[tuple[str, str], Block]:
    """Every block of every documentation page, by (page, key)."""
    return {(b.page, b.key): b for page in doc_pages() for b in page_blocks(page)}


# --- shell lines ---------------------------------------------------------------------------


def shell_lines(text: str) -> list[str]:
    """The command lines of a shell block: continuation lines joined, blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def commands(line: str) -> list[list[str]]:
    """The argument vectors of one line, as the shell splits it: quotes removed, a trailing
    comment dropped, ``&&`` chains split."""
    return [shlex.split(part, comments=True) for part in re.split(r"\s&&\s", line)]


# --- thinct's parser -------------------------------------------------------------------------


def thinct_command(args: list[str]) -> tuple[str, Any, list[str]]:
    """The (sub)command that ``thinct ARGS`` names, descending into command groups: its name
    (``nnunet convert``), click command and the arguments left for it."""
    command: Any = typer.main.get_command(thinct.cli.app.app)
    names: list[str] = []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        names.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    return " ".join(names), command, args


def parse_thinct(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``thinct ARGS`` as the real command line does, without running it: an unknown
    command or option, a bad choice, a bad number or a missing argument fails the test.
    Returns the command's name and its parsed parameters."""
    name, command, rest = thinct_command(args)
    if not name:
        pytest.fail(f"`thinct {shlex.join(args)}` names no thinct command")
    try:
        with command.make_context(f"thinct {name}", rest) as context:
            return name, dict(context.params)
    except Exception as error:  # typer's vendored click errors share this interface
        if not hasattr(error, "format_message"):
            raise
        pytest.fail(f"`thinct {shlex.join(args)}`: {error.format_message()}")


# --- other programs ------------------------------------------------------------------------

# Programs a block may name that no test can check here: what they do is outside thinct.
UNCHECKED = {
    ".": "the shell sourcing a virtual environment",
    "mkdir": "makes a folder",
    "napari": "opens napari's window"
    " (tests/napari_plugin/test_napari_*.py drive its reader and panels)",
    "unzip": "unpacks a download",
}
UNCHECKED_PIP = {"download": "needs the network"}
UNCHECKED_PYTHON_MODULES = {"venv": "the standard library's virtual environments"}


class _Parsed(Exception):
    """Raised in place of running a script once its argparse has accepted the arguments."""


def check_script_arguments(script: str, args: list[str]) -> None:
    """The repository script exists and its own argparse accepts ARGS: its ``main()`` runs with
    them as ``sys.argv`` and stops as soon as they are parsed."""
    path = ROOT / script
    assert path.is_file(), f"{script} does not exist"
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser: argparse.ArgumentParser, *a: Any, **k: Any) -> None:
        parse(parser, *a, **k)
        raise _Parsed

    namespace = runpy.run_path(str(path), run_name="doc_block_script")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", [script, *args])
        with pytest.raises(_Parsed):
            namespace["main"]()


def check_pip(args: list[str]) -> None:
    """``pip install [-c FILE] [-e] TARGET[EXTRAS]``: the constraints file exists, the target
    is this repository and its extras are declared (as installed from pyproject.toml)."""
    if args[0] in UNCHECKED_PIP:
        return
    assert args[0] == "install", f"pip {args[0]}: no check for it"
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-c", "--constraint")
    options.add_argument("-e", "--editable", action="store_true")
    options.add_argument("target")
    parsed = options.parse_args(args[1:])
    if parsed.constraint:
        assert (ROOT / parsed.constraint).is_file(), f"{parsed.constraint} does not exist"
    target = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", parsed.target)
    assert target, f"pip install {parsed.target}: not this repository"
    declared = importlib.metadata.metadata("thinct").get_all("Provides-Extra") or []
    for extra in target[1].split(",") if target[1] else []:
        assert extra in declared, f"pip install {parsed.target}: no extra {extra!r}"


def check_pytest(args: list[str], markers: list[str]) -> None:
    """``python -m pytest [-m EXPR]``: every marker the expression names is declared (in
    ``markers``, pytest's ini value)."""
    declared = {m.split(":")[0] for m in markers}
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-m", dest="markers", default="")
    parsed, _ = options.parse_known_args(args)
    named = set(re.findall(r"\w+", parsed.markers)) - {"not", "and", "or"}
    assert named <= declared, f"pytest -m {parsed.markers!r}: undeclared {named - declared}"


def check_torchrun(args: list[str]) -> None:
    """torchrun's own parser takes its options, the module it starts is thinct, and thinct's
    parser takes the rest."""
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args(args)
    assert parsed.module and parsed.training_script == "thinct", f"torchrun {shlex.join(args)}"
    parse_thinct(parsed.training_script_args)


def check_python_module(module: str, args: list[str], markers: list[str]) -> None:
    """``python -m MODULE ARGS``: thinct, pytest, or a module with nothing to check."""
    if module == "thinct":
        parse_thinct(args)
    elif module == "pytest":
        check_pytest(args, markers)
    elif module not in UNCHECKED_PYTHON_MODULES:
        pytest.fail(f"python -m {module}: no check for it (add one, or to the unchecked)")


def check_command(argv: list[str], markers: list[str]) -> None:
    """Check one command of a block without running it: thinct's parser for thinct (also
    under ``python -m`` and torchrun), argparse for a repository script, the installed
    metadata for pip's extras, pytest's markers, the file for ``bash SCRIPT``. A program with
    no check and no entry in `UNCHECKED` fails, so that a new kind of command is a decision."""
    program, args = argv[0], argv[1:]
    if program == "thinct":
        parse_thinct(args)
    elif program == "torchrun":
        check_torchrun(args)
    elif program == "python" and args[:1] == ["-m"]:
        check_python_module(args[1], args[2:], markers)
    elif program == "python":
        check_script_arguments(args[0], args[1:])
    elif program == "pip":
        check_pip(args)
    elif program == "bash":
        assert (ROOT / args[0]).is_file(), f"bash {args[0]}: no such script"
    elif program not in UNCHECKED:
        pytest.fail(f"{shlex.join(argv)}: no check for {program!r} (add one, or to UNCHECKED)")


# --- synopses ------------------------------------------------------------------------------

_SYNOPSIS_OPTION = re.compile(r"(?<![\w-])(-{1,2}[a-z][\w-]*)(?:[ =]([\w-]+(?:\|[\w-]+)+))?")


def _choices(command: Any, name: str) -> set[str] | None:
    """The values an option takes when its annotation is an Enum (None otherwise)."""
    hints = typing.get_type_hints(command.callback, include_extras=True)
    annotation = typing.get_args(hints[name])[0] if name in hints else None
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return {member.value for member in candidate}
        if typing.get_origin(candidate) is list:  # a repeatable option of choices
            (item,) = typing.get_args(candidate)
            if isinstance(item, type) and issubclass(item, Enum):
                return {member.value for member in item}
    return None


def check_synopses(text: str) -> None:
    """Each synopsis of a block (a line that starts with ``thinct`` and the indented lines
    after it) matches its command."""
    for synopsis in re.split(r"\n(?=thinct )", text.strip()):
        check_synopsis(synopsis)


def check_synopsis(text: str) -> None:
    """A usage synopsis (``thinct COMMAND ARGS [--option a|b] ...``) matches the command: it
    shows every option the command has, no option it lacks, and exactly the choices of each
    option whose values it lists."""
    words = text.split()
    assert words[0] == "thinct", f"not a thinct synopsis: {text!r}"
    name, command, _ = thinct_command(words[1:])
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    shown: dict[str, str | None] = {m[1]: m[2] for m in _SYNOPSIS_OPTION.finditer(text)}
    unknown = set(shown) - set(options) - {"--help", "-h"}
    assert not unknown, f"thinct {name}: the synopsis shows {unknown}, which it lacks"
    for option, listed in shown.items():
        if listed is not None:
            real = _choices(command, options[option].name)
            assert set(listed.split("|")) == real, f"thinct {name} {option} {listed}: not {real}"
    missing = [
        p.opts[0]
        for p in command.params
        if p.opts[0].startswith("-") and not set(p.opts + p.secondary_opts) & set(shown)
    ]
    assert not missing, f"thinct {name}: the synopsis lacks {missing}"
