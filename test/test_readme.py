"""The README is a short front door whose links all work; the node's parameter table (docs/node.md,
generated from mono_depth_ros/config.py) documents every node parameter with its real default."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mono_depth_ros.config import PARAMETERS, DepthNodeConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NODE_DOC = ROOT / "docs" / "node.md"
README_BUDGET_BYTES = 20 * 1024


def _table_rows(text: str, first_header: str):
    rows = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith(f"| {first_header} |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            match = re.fullmatch(r"`([^`]+)`", cells[0])
            if match:
                rows[match.group(1)] = cells
    return rows


def test_parameter_table_matches_config():
    rows = _table_rows(NODE_DOC.read_text(), "parameter")
    defaults = DepthNodeConfig()
    fields = [f.name for f in dataclasses.fields(DepthNodeConfig)]
    assert sorted(rows) == sorted(fields)
    for name in fields:
        value = getattr(defaults, name)
        expected = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        _, kind, default, allowed, runtime, _ = rows[name]
        assert default == f"`{expected}`", name
        assert kind == type(value).__name__, name
        assert allowed == PARAMETERS[name].range_text(), name
        assert runtime.startswith("no") == PARAMETERS[name].read_only, name


def test_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.read_text().splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_stays_within_its_budget():
    size = len(README.read_bytes())
    assert size <= README_BUDGET_BYTES, (
        f"README.md is {size} bytes, over its {README_BUDGET_BYTES}-byte budget: move detail into docs/")


def _outside_code(text: str) -> list:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _anchors(path: Path) -> set:
    """GitHub's heading anchors: lowercase, punctuation other than '-' and '_' dropped, spaces to '-';
    a repeated heading gets -1, -2, ..."""
    anchors, seen = set(), {}
    for line in _outside_code(path.read_text()):
        match = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not match:
            continue
        anchor = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def _links(path: Path) -> list:
    """The targets of the Markdown links in a file, outside code."""
    text = "\n".join(_outside_code(path.read_text()))
    text = re.sub(r"(?<!\[)`[^`\n]*`(?!\])", "", text)  # inline code, but not link texts like [`evaluate`](...)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_docs_file_is_linked_from_the_readme():
    assert DOCS, "docs/ has no Markdown files"
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in _links(README)}
    missing = [doc.relative_to(ROOT).as_posix() for doc in DOCS if doc.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(path):
    broken = []
    for target in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            broken.append(f"{target}: no heading with that anchor in {linked.relative_to(ROOT).as_posix()}")
    assert not broken, f"{path.relative_to(ROOT).as_posix()}: " + "; ".join(broken)
