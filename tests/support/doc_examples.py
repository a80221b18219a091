"""The runnable examples of the docs: fenced blocks marked ``tested``, with the output they promise.

A block opens with a fence whose info string is ``sh tested`` or ``python tested``; the next block,
when it is a ``json output`` or ``text output`` block, is what the example prints. In the promised
output a ``<...>`` placeholder stands for any value: a whole JSON string ``"<id>"`` matches any
JSON value, and ``<...>`` inside a text line matches any text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^```(\S*)\s*(.*)$")
PLACEHOLDER = re.compile(r"<[^<>]+>")
LANGUAGES = ("sh", "python")


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    language: str
    code: str
    output_kind: str | None = None  # "json" or "text"
    output: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def examples(path: Path) -> list[Example]:
    """The tested blocks of a Markdown file, in order, each with its promised output."""
    blocks = _blocks(path.read_text().splitlines())
    found = []
    for i, (line, language, flags, code) in enumerate(blocks):
        if "tested" not in flags:
            continue
        if language not in LANGUAGES:
            raise ValueError(
                f"{path.name}:{line}: a tested block is {' or '.join(LANGUAGES)}, not {language!r}"
            )
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following is not None and "output" in following[2]:
            found.append(Example(path, line, language, code, following[1], following[3]))
        else:
            found.append(Example(path, line, language, code))
    return found


def _blocks(lines: list[str]) -> list[tuple[int, str, list[str], str]]:
    """(line, language, flags, text) of every fenced block; a block right after another (blank lines
    between only) is kept, so an output block can be paired with its example."""
    blocks = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, language, flags = i + 1, match.group(1), match.group(2).split()
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append((start, language, flags, "\n".join(body) + "\n"))
        i += 1
    return blocks


def output_problem(example: Example, printed: str) -> str | None:
    """Why ``printed`` is not what the example promises; None when it is."""
    if example.output is None:
        return None
    if example.output_kind == "json":
        try:
            actual = json.loads(printed)
        except ValueError:
            return f"printed no JSON: {printed!r}"
        return _json_problem(json.loads(example.output), actual, "$")
    wanted = [line.rstrip() for line in example.output.strip("\n").splitlines()]
    got = [line.rstrip() for line in printed.strip("\n").splitlines()]
    if len(wanted) != len(got):
        return f"{len(got)} lines printed, {len(wanted)} promised:\n{printed}"
    for number, (want, line) in enumerate(zip(wanted, got, strict=True), 1):
        if not _line_pattern(want).fullmatch(line):
            return f"line {number}: {line!r} is not {want!r}"
    return None


def _line_pattern(text: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in PLACEHOLDER.finditer(text):
        parts += [re.escape(text[last : match.start()]), ".+?"]
        last = match.end()
    parts.append(re.escape(text[last:]))
    return re.compile("".join(parts))


def _json_problem(wanted: Any, actual: Any, where: str) -> str | None:
    if isinstance(wanted, str) and PLACEHOLDER.fullmatch(wanted):
        return None
    if isinstance(wanted, dict):
        if not isinstance(actual, dict) or set(wanted) != set(actual):
            return f"{where}: {actual!r} has not the keys {sorted(wanted)}"
        for key in wanted:
            problem = _json_problem(wanted[key], actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(wanted, list):
        if not isinstance(actual, list) or len(wanted) != len(actual):
            return f"{where}: {actual!r} is not a list of {len(wanted)}"
        for n, (item, value) in enumerate(zip(wanted, actual, strict=True)):
            problem = _json_problem(item, value, f"{where}[{n}]")
            if problem:
                return problem
        return None
    same = type(wanted) is type(actual) and wanted == actual
    return None if same else f"{where}: {actual!r}, not {wanted!r}"
