"""The reliability matrix (test/robustness_matrix.yaml) is true to the tests and to docs/reliability.md.

Each row names the tests that prove it: they must exist, so a renamed or deleted test cannot
leave a claim behind. The "Reliability" table of docs/reliability.md must list the same rows.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MATRIX = yaml.safe_load((Path(__file__).with_name("robustness_matrix.yaml")).read_text())
PARTS = {"node": "node", "model_files": "model file", "trainer": "trainer"}
ROWS = [(PARTS[part], row) for part, rows in MATRIX.items() for row in rows]


def test_matrix_has_the_three_parts_and_complete_rows():
    assert set(MATRIX) == set(PARTS)
    for _, row in ROWS:
        assert set(row) == {"case", "behaviour", "tests"}, row
        assert row["case"].strip() and row["behaviour"].strip() and row["tests"], row


def _test_functions(path: Path) -> set:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("part, row", ROWS, ids=[f"{part}: {row['case'][:40]}" for part, row in ROWS])
def test_every_named_test_exists(part, row):
    for reference in row["tests"]:
        file_name, _, function = reference.partition("::")
        path = ROOT / file_name
        assert path.is_file(), f"{reference}: no such file"
        functions = _test_functions(path)
        assert functions, f"{file_name} has no tests"
        if function:
            assert function in functions, f"{reference}: no such test"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def readme_rows():
    """The reliability table of docs/reliability.md -> [(part, case, behaviour, tests)]."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    match = re.search(r"^\| part \| bad input or fault \| what happens \| tested by \|\n\|[-|]+\|\n((?:\|.*\n)+)", text, re.M)
    assert match, "docs/reliability.md has no reliability table (header: | part | bad input or fault | what happens | tested by |)"
    rows = []
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(tuple(cells))
    return rows


def expected_row(part: str, row: dict) -> tuple:
    tests = ", ".join(f"`{reference.split('/')[-1]}`" for reference in row["tests"])
    return (part, _cell(row["case"]), _cell(row["behaviour"]), tests)


def test_readme_table_is_the_matrix():
    assert readme_rows() == [expected_row(part, row) for part, row in ROWS]


if __name__ == "__main__":  # print the table for docs/reliability.md: python test/test_robustness_matrix.py
    print("| part | bad input or fault | what happens | tested by |\n|---|---|---|---|")
    for part, row in ROWS:
        print("| " + " | ".join(expected_row(part, row)) + " |")
