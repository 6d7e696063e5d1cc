"""Values made JSON-safe for the run's files: NaN/inf -> null, tensors and numpy scalars -> Python numbers."""
from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become null; tensors and numpy scalars become Python numbers."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
