"""Plain-text and Markdown tables shared by the benchmark scripts."""
from __future__ import annotations

from typing import List, Sequence


class Table:
    """Rows of strings printed as aligned plain text or as a Markdown table."""

    def __init__(self, title: str, header: Sequence[str]):
        self.title, self.header, self.rows = title, list(header), []
        self.notes: List[str] = []

    def add(self, *cells) -> None:
        self.rows.append([str(cell) for cell in cells])

    def render(self, markdown: bool) -> str:
        if markdown:
            lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |"]
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.header))) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines += [""] + [f"{note}  " for note in self.notes]
            return "\n".join(lines).rstrip() + "\n"
        widths = [max(len(row[i]) for row in [self.header] + self.rows) for i in range(len(self.header))]

        def line(row):
            return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

        rule = "-" * len(line(self.header))
        out = [f"== {self.title} ==", line(self.header), rule] + [line(row) for row in self.rows]
        return "\n".join(out + self.notes) + "\n"
