"""The files generated from depth_node's parameter declaration (mono_depth_ros/config.py).

    python -m mono_depth_ros.config --write   # rewrite config/depth.yaml and docs/node.md's table
    python -m mono_depth_ros.config --check   # exit 1 when either is stale (a test runs this check)

``config/depth.yaml`` is written whole (ROS 2 parameter-file form, each description as a comment);
in docs/node.md only the table between ``<!-- parameters:begin -->`` and ``<!-- parameters:end -->``
is replaced. :func:`plain_text` gives the one-line texts of the node's ROS ParameterDescriptors.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .config import PARAMETERS, ParameterSpec

ROOT = Path(__file__).resolve().parents[1]
YAML_FILE = Path("config") / "depth.yaml"
DOC_FILE = Path("docs") / "node.md"
BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"
COMMAND = "python -m mono_depth_ros.config --write"
YAML_WIDTH = 100

YAML_HEADER = f"""\
# depth_node parameters and their defaults (docs/node.md, 'Parameters'). `/**` applies to the
# node whatever its name or namespace; launch arguments model:= and device:= override these.
# Generated from mono_depth_ros/config.py by `{COMMAND}`:
# edit the declarations there, not this file.
"""
NBSP = "\u00a0"  # keeps a range such as '[1, 64]' on one comment line

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]*)\)")


def _plain_link(match: "re.Match[str]") -> str:
    text, target = match.group(1), match.group(2)
    file_part = target.partition("#")[0] or "node.md"
    return f"docs/{file_part}, '{text}'" if "#" in target else f"docs/{file_part}"


def plain_text(markdown: str) -> str:
    """Markdown of the declarations as plain text: links become 'docs/node.md, 'Heading'', no backticks."""
    return _LINK.sub(_plain_link, markdown).replace("`", "")


def rename_note(spec: ParameterSpec) -> str:
    return f"Formerly `{spec.renamed_from}` (still accepted, with a deprecation warning)." if spec.renamed_from else ""


def yaml_value(value) -> str:
    """A default as YAML that reads back as the same type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.partition("e")[0]:  # YAML 1.1 reads 1e-05 as a string
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def render_yaml(parameters: Dict[str, ParameterSpec] = PARAMETERS) -> str:
    lines = [YAML_HEADER.rstrip("\n"), "/**:", "  ros__parameters:"]
    for index, (name, spec) in enumerate(parameters.items()):
        notes = [spec.description]
        if spec.range_text():
            notes.append(f"Allowed:{NBSP}{spec.range_text().replace(' ', NBSP)}.")
        if spec.read_only:
            notes.append("Read-only: restart the node to change it.")
        notes.append(rename_note(spec))
        comment = plain_text(" ".join(note for note in notes if note))
        if index:
            lines.append("")
        lines += [line.replace(NBSP, " ") for line in textwrap.wrap(
            comment, YAML_WIDTH, initial_indent="    # ", subsequent_indent="    # ", break_on_hyphens=False)]
        lines.append(f"    {name}: {yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(parameters: Dict[str, ParameterSpec] = PARAMETERS) -> str:
    lines = [
        f"<!-- generated from mono_depth_ros/config.py by `{COMMAND}`: edit the declarations there -->",
        "| parameter | type | default | range | change at run time | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in parameters.items():
        default = yaml_value(spec.default) if isinstance(spec.default, bool) else json.dumps(spec.default)
        meaning = " ".join(part for part in (spec.description, rename_note(spec)) if part)
        lines.append(
            f"| `{name}` | {spec.kind.__name__} | `{default}` | {_cell(spec.range_text())} | "
            f"{'no (restart)' if spec.read_only else 'yes'} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the parameter markers replaced by ``table``."""
    begin, end = document.find(BEGIN), document.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"{DOC_FILE} has no '{BEGIN}' ... '{END}' block for the parameter table")
    return document[: begin + len(BEGIN)] + "\n" + table + document[end:]


def generated(root: Path = ROOT) -> Dict[Path, str]:
    """{path: the content it must have} for both generated files under ``root``."""
    doc = root / DOC_FILE
    return {root / YAML_FILE: render_yaml(), doc: replace_table(doc.read_text(encoding="utf-8"), render_table())}


def stale_files(root: Path = ROOT) -> List[Path]:
    return [path for path, text in generated(root).items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mono_depth_ros.config",
        description=f"Generate {YAML_FILE} and the parameter table of {DOC_FILE} from mono_depth_ros/config.py.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the generated files")
    action.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="source checkout (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.root / DOC_FILE).is_file():
        print(f"error: {args.root / DOC_FILE} not found: run from a source checkout or pass --root", file=sys.stderr)
        return 2
    try:
        stale = stale_files(args.root)
        if args.check:
            for path in stale:
                print(f"{path} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1 if stale else 0
        for path, text in generated(args.root).items():
            if path in stale:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
