"""Package exports loaded on first use (PEP 562).

A core package's `__init__` names its public API without importing it: importing
`hpscaler.backends.types` must not import the whole scheduler (numpy) or the backend registry
(pydantic), and packages that refer to each other's data (backends <-> provisioning) must not
import each other at package import time. Each `__init__` lists its exports three ways, checked
equal by `tests/test_architecture.py`: `__all__`, the `TYPE_CHECKING` imports (for type checkers)
and the module map given to `lazy_exports` (for the interpreter).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, exporting `exports` (submodule -> names)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
