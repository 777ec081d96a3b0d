"""Package attributes imported on first use (PEP 562), so importing a package stays light.

geometry/ and inference/ re-export names of submodules that need torch; with these helpers a
torch-free submodule (or the package itself) can be imported without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Mapping, Tuple


def lazy_attributes(package: str, namespace: Dict[str, object], exports: Mapping[str, str],
                    names: List[str]) -> Tuple[Callable[[str], object], Callable[[], List[str]]]:
    """(__getattr__, __dir__) for ``package``: ``exports`` maps a name to the submodule that
    defines it; the first look-up imports that submodule and caches the value in ``namespace``
    (the package's globals()), so later look-ups skip __getattr__. ``names``: the package's __all__."""

    def __getattr__(name: str) -> object:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{submodule}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
