"""Names a package imports on first use (a PEP 562 module ``__getattr__``), so that importing the
package does not load the heavy dependency (torch, torchvision) that only those names need."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any


def lazy_names(package: str, module: str, names: Iterable[str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` that imports ``names`` from ``module`` on first use and
    binds them in the package, so later look-ups find them there."""
    lazy = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in lazy:
            value = getattr(importlib.import_module(module), name)
            vars(sys.modules[package])[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
