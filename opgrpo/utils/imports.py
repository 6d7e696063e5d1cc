"""Objects named by import path (``package.module:attribute``), as configs name user code (extra reward functions)."""
from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str) -> Any:
    """The object at ``package.module:attribute`` (``package.module.attribute`` also works); ValueError saying why
    when it cannot be imported."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not an import path like package.module:function")
    try:
        obj = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code is reported the same way
        raise ValueError(f"cannot import module {module!r} ({type(exc).__name__}: {exc})") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
