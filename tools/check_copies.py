"""Keep the `# Copied from` markers honest (the convention of transformers' `make fix-copies`).

A model file may copy a building block from another model instead of importing it across model folders. The copy
is marked on the line just above its `def` / `class` (decorators included):

    # Copied from talkface.models.wav2lip.modeling_wav2lip.Wav2LipConvBlock with Wav2Lip->TalkLip

and must then equal its source after the replacements listed after `with` (`A->B`, comma separated, applied in
order as plain text). This tool checks every marker under `talkface/`:

    python tools/check_copies.py          # check: lists every stale copy, exit status 1 if there is one
    python tools/check_copies.py --fix    # rewrite each stale copy from its source

The source is found by name (`module.path.Object` or `module.path.Class.method`) in the repository's files, never
by importing anything. The tests run the check (tests/test_check_copies.py).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^(?P<indent>\s*)# Copied from (?P<target>[\w.]+)(?:\s+with\s+(?P<replacements>.+?))?\s*$")
ANY_MARKER = re.compile(r"^\s*#\s*Copied from\b", re.IGNORECASE)
REPLACEMENT = re.compile(r"^\s*(?P<old>[^\s,>-][^,]*?)\s*->\s*(?P<new>[^,]*?)\s*$")


class CopyMarkerError(ValueError):
    """A marker that cannot be checked: unknown source, nothing marked, or an unreadable `with` clause."""


@dataclass
class Copy:
    """One marked copy: where it is, what it copies, and its current and expected text."""

    path: Path
    marker_line: int  # 1-based line of the `# Copied from` comment
    target: str
    start: int  # 0-based index of the copy's first line (its first decorator or `def` / `class`)
    stop: int  # 0-based index one past its last line
    current: str
    expected: str

    @property
    def is_stale(self) -> bool:
        return _normalised(self.current) != _normalised(self.expected)


def _normalised(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip("\n").splitlines())


def parse_replacements(text: str | None) -> list[tuple[str, str]]:
    """`"Wav2Lip->TalkLip, wav2lip->talklip"` -> [("Wav2Lip", "TalkLip"), ("wav2lip", "talklip")]."""
    if not text:
        return []
    pairs = []
    for part in text.split(","):
        match = REPLACEMENT.match(part)
        if match is None or not match["old"] or not match["new"]:
            raise CopyMarkerError(f"cannot read the replacement {part.strip()!r}; write it as Old->New")
        pairs.append((match["old"], match["new"]))
    return pairs


def _node_span(node: ast.AST) -> tuple[int, int]:
    """0-based [start, stop) line span of a def / class, decorators included."""
    first = min([node.lineno] + [decorator.lineno for decorator in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno


def _find_definition(tree: ast.Module, qualified_name: str):
    """The def / class `A` or `A.b` (nested through classes) in a module tree, or None."""
    body = tree.body
    node = None
    for name in qualified_name.split("."):
        node = next((item for item in body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and item.name == name), None)
        if node is None:
            return None
        body = getattr(node, "body", [])
    return node


def _definition_starting_at(tree: ast.Module, line_index: int):
    """The def / class (at any depth) whose span starts at 0-based `line_index`, or None."""
    for node in ast.walk(tree):
        is_definition = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if is_definition and _node_span(node)[0] == line_index:
            return node
    return None


def _reindent(lines: list[str], old_indent: str, new_indent: str) -> list[str]:
    if old_indent == new_indent:
        return lines
    return [new_indent + line[len(old_indent):] if line.startswith(old_indent) else line for line in lines]


class SourceIndex:
    """Reads (and parses once) the files that marked copies point at."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[Path, tuple[list[str], ast.Module]] = {}

    def parsed(self, path: Path) -> tuple[list[str], ast.Module]:
        if path not in self._cache:
            text = path.read_text(encoding="utf-8")
            self._cache[path] = (text.splitlines(keepends=True), ast.parse(text, filename=str(path)))
        return self._cache[path]

    def forget(self, path: Path):
        self._cache.pop(path, None)

    def source_of(self, target: str) -> tuple[str, str]:
        """(code, indentation of its first line) of `package.module.Object[.method]`."""
        parts = target.split(".")
        # the longest prefix that names a file is the module; the rest is the object inside it
        for split in range(len(parts) - 1, 0, -1):
            path = self.root.joinpath(*parts[:split]).with_suffix(".py")
            if path.is_file():
                lines, tree = self.parsed(path)
                node = _find_definition(tree, ".".join(parts[split:]))
                if node is None:
                    raise CopyMarkerError(f"{target}: {path.relative_to(self.root)} has no {'.'.join(parts[split:])}")
                start, stop = _node_span(node)
                code_lines = lines[start:stop]
                indent = re.match(r"\s*", code_lines[0]).group(0)
                return "".join(code_lines), indent
        raise CopyMarkerError(f"{target}: no module file for it under {self.root}")


def find_copies(path: Path, index: SourceIndex) -> list[Copy]:
    """Every marked copy in one file, with the text its source says it should have."""
    lines, tree = index.parsed(path)
    copies = []
    for number, line in enumerate(lines):
        match = MARKER.match(line)
        where = f"{path.relative_to(index.root)}:{number + 1}"
        if match is None:
            if ANY_MARKER.match(line):
                raise CopyMarkerError(f"{where}: cannot read the marker; write `# Copied from package.module.Object` "
                                      "optionally followed by `with Old->New, ...` and nothing else")
            continue
        node = _definition_starting_at(tree, number + 1)
        if node is None:
            raise CopyMarkerError(f"{where}: a `# Copied from` marker must sit on the line just above a def or class")
        start, stop = _node_span(node)
        try:
            source, source_indent = index.source_of(match["target"])
            replacements = parse_replacements(match["replacements"])
        except CopyMarkerError as err:
            raise CopyMarkerError(f"{where}: {err}") from None
        for old, new in replacements:
            source = source.replace(old, new)
        copy_indent = re.match(r"\s*", lines[start]).group(0)
        expected = "".join(_reindent(source.splitlines(keepends=True), source_indent, copy_indent))
        copies.append(Copy(path, number + 1, match["target"], start, stop, "".join(lines[start:stop]), expected))
    return copies


def python_files(root: Path) -> list[Path]:
    return sorted(path for path in (root / "talkface").rglob("*.py") if "__pycache__" not in path.parts)


def check_copies(root: Path = REPO_ROOT, fix: bool = False) -> list[Copy]:
    """The stale copies under `root/talkface` (after rewriting them when `fix`)."""
    index = SourceIndex(root)
    stale_copies = []
    for path in python_files(root):
        stale = [copy for copy in find_copies(path, index) if copy.is_stale]
        stale_copies += stale
        if fix and stale:
            lines = index.parsed(path)[0][:]
            for copy in sorted(stale, key=lambda item: item.start, reverse=True):  # bottom-up keeps indices valid
                expected = copy.expected if copy.expected.endswith("\n") else copy.expected + "\n"
                lines[copy.start : copy.stop] = [expected]
            path.write_text("".join(lines), encoding="utf-8")
            index.forget(path)
    return stale_copies


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", action="store_true", help="rewrite stale copies from their sources")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        stale = check_copies(args.root, fix=args.fix)
    except CopyMarkerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for copy in stale:
        action = "rewrote" if args.fix else "differs from its source"
        print(f"{copy.path.relative_to(args.root)}:{copy.marker_line}: copy of {copy.target} {action}")
    if stale and not args.fix:
        print(f"{len(stale)} stale cop{'y' if len(stale) == 1 else 'ies'}; run `python tools/check_copies.py --fix`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
