"""What the benchmark scripts share: tables, and importing a local Monodepth2 checkout."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def load_average() -> str:
    """The 1/5/15-minute load averages ("1.23/0.98/0.75"), printed beside timings taken on a shared machine."""
    try:
        return "/".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


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


MONODEPTH2_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@contextlib.contextmanager
def monodepth2_on_path(checkout: Path, stand_ins: Optional[Dict[str, object]] = None):
    """Import a local Monodepth2 checkout's modules inside this block (never copied into the repo).

    Its encoder calls ``torchvision.models.resnet18(pretrained)``, which torchvision >= 0.13 no
    longer accepts positionally, so the builders are wrapped (random weights only) for the block;
    ``stand_ins`` are modules put into sys.modules for the block (e.g. stubs of its optional imports).
    """
    import torchvision

    originals = {name: getattr(torchvision.models, name) for name in MONODEPTH2_RESNETS}

    def legacy(builder):
        def build(pretrained=False, **kwargs):
            if pretrained:
                raise RuntimeError("the benchmarks use random weights")
            return builder(weights=None, **kwargs)

        return build

    stand_ins = stand_ins or {}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    sys.path.insert(0, str(checkout))
    for name in MONODEPTH2_RESNETS:
        setattr(torchvision.models, name, legacy(originals[name]))
    try:
        yield
    finally:
        for name, builder in originals.items():
            setattr(torchvision.models, name, builder)
        sys.path.remove(str(checkout))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
