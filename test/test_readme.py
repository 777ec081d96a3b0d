"""The README's parameter table documents every node parameter with its real default."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from mono_depth_ros.config import NODE_PARAMETER_DOCS, DepthNodeConfig

README = Path(__file__).resolve().parents[1] / "README.md"


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
    rows = _table_rows(README.read_text(), "parameter")
    defaults = DepthNodeConfig()
    fields = [f.name for f in dataclasses.fields(DepthNodeConfig)]
    assert sorted(rows) == sorted(fields)
    for name in fields:
        value = getattr(defaults, name)
        expected = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        _, kind, default, runtime, _ = rows[name]
        assert default == f"`{expected}`", name
        assert kind == type(value).__name__, name
        read_only = NODE_PARAMETER_DOCS[name][0]
        assert runtime.startswith("no") == read_only, name


def test_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.read_text().splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
