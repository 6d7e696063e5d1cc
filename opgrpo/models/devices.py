"""Device and dtype names from config ("auto", "cuda:1", "bf16", ...) resolved to torch values, in one place."""
from __future__ import annotations

DTYPE_NAMES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    """``auto`` -> bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU; or the named dtype."""
    import torch

    if dtype == "auto":
        if str(device).startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    try:
        return table[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto or one of {', '.join(DTYPE_NAMES)}") from None
