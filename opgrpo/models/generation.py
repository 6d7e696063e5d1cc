"""Policy loading and batched response generation (transformers, or vLLM when installed and enabled).

`load_policy` takes a hub id or a local directory (optionally a GGUF file inside it) and an optional
chat-template override; `generate_responses` samples ``num_return_sequences`` responses per chat prompt
in left-padded batches, with a progress bar. Prompt texts are cleaned first (``opgrpo.text.clean``: a lone
surrogate or control character would crash the tokenizer), counted in one WARNING per call. No Hydra here:
plain arguments, usable from a notebook.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from opgrpo.models.batching import pad_token_id, padded_batches
from opgrpo.models.devices import resolve_device, resolve_dtype
from opgrpo.text.clean import clean_messages

log = logging.getLogger(__name__)


def load_tokenizer(name_or_path: str, *, gguf_file: str = "", chat_template: str = "", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    if chat_template:
        path = Path(chat_template)
        tok.chat_template = path.read_text() if path.suffix in (".jinja", ".j2", ".txt") and path.exists() else chat_template
    if tok.chat_template is None:
        raise ValueError(
            f"model.chat_template: the tokenizer of {name_or_path} has no chat template; set model.chat_template"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(
    name_or_path: str,
    *,
    gguf_file: str = "",
    dtype: str = "auto",
    chat_template: str = "",
    trust_remote_code: bool = False,
    device: str = "auto",
):
    """(model, tokenizer) of a causal LM policy, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    tok = load_tokenizer(name_or_path, gguf_file=gguf_file, chat_template=chat_template, trust_remote_code=trust_remote_code)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code, **kwargs
    )
    model.to(device).eval()
    return model, tok


BACKENDS = ("auto", "transformers", "vllm")
"""Generation backends: ``auto`` picks vLLM when it is installed and a GPU is there."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def _clean_prompts(prompts: Sequence[list[dict]]) -> list[list[dict]]:
    cleaned, changed = clean_messages(prompts)
    if changed:
        log.warning("generation: %d prompt(s) held lone surrogates or control characters; replaced before the "
                    "model (U+FFFD / space)", changed)
    return cleaned


@torch.inference_mode()
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    *,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 1200,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    seed: int = 42,
    progress: bool = True,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[list[str]]:
    """Sample `num_return_sequences` responses for each chat prompt; returns one list per prompt.
    ``chat_template_kwargs`` go to ``apply_chat_template`` (e.g. ``{"enable_thinking": False}`` for Qwen3)."""
    torch.manual_seed(seed)
    prompts = _clean_prompts(prompts)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True,
                                           **dict(chat_template_kwargs or {})) for p in prompts]
    encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    pad_id = pad_token_id(tokenizer)
    out: list[list[str]] = [[] for _ in texts]
    device = next(model.parameters()).device
    sample = temperature > 0
    bar = tqdm(total=len(texts), desc="generate", unit="prompt", disable=not progress)
    # batches sorted by the prompts' character length (the sampled outputs depend on the batch composition)
    for idx, ids, mask in padded_batches(encoded, batch_size, pad_id, lengths=[len(t) for t in texts]):
        gen = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            pad_token_id=pad_id,
        )
        new = gen[:, ids.shape[1] :]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            out[i] = [s.strip() for s in decoded[j * num_return_sequences : (j + 1) * num_return_sequences]]
        bar.update(len(idx))
    bar.close()
    return out


HF_GLOBAL_SAMPLING = {"top_k": 50, "repetition_penalty": 1.0}
"""What transformers' ``generate`` samples with when neither the call nor the checkpoint's generation config sets
these (``GenerationConfig._get_default_generation_params``)."""


def sampling_defaults(generation_config: Any = None) -> dict[str, Any]:
    """The sampling settings that transformers' ``generate`` (and so the authors' HF pipeline) takes from a
    checkpoint's generation config when the call gives only temperature and top-p: ``top_k`` and
    ``repetition_penalty`` (transformers' global 50 and 1.0 where the config has none) and ``min_p`` when set.
    ``generation_config``: a ``transformers.GenerationConfig``, a mapping, or None (the global defaults)."""
    def get(key: str) -> Any:
        if generation_config is None:
            return None
        if isinstance(generation_config, Mapping):
            return generation_config.get(key)
        return getattr(generation_config, key, None)

    out = {k: get(k) if get(k) is not None else v for k, v in HF_GLOBAL_SAMPLING.items()}
    if get("min_p") is not None:
        out["min_p"] = get("min_p")
    return out


def checkpoint_sampling_defaults(name_or_path: str) -> dict[str, Any]:
    """``sampling_defaults`` of the checkpoint's ``generation_config.json`` (transformers' global defaults when
    it has none)."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(str(name_or_path))
    except (OSError, ValueError):  # no generation_config.json: transformers falls back to its global defaults
        config = None
    return sampling_defaults(config)


def vllm_sampling_kwargs(*, temperature: float, top_p: float, max_new_tokens: int, num_return_sequences: int = 1,
                         defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` that sample as transformers' ``generate`` would: the call's
    temperature, top-p, length and count, plus the checkpoint's ``defaults`` (``sampling_defaults``: top-k,
    repetition penalty, min-p), which vLLM would otherwise drop when given its own SamplingParams. A top-k of 0 or
    less (transformers: no top-k filtering) is left out: vLLM's default considers every token."""
    kwargs: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens,
                              "n": num_return_sequences}
    for key, value in dict(defaults or {}).items():
        if key == "top_k" and (value is None or int(value) <= 0):
            continue
        kwargs[key] = value
    return kwargs


def load_vllm(name_or_path: str, *, dtype: str = "auto", seed: int = 42, tensor_parallel_size: int = 1,
              gpu_memory_utilization: float = 0.9):
    """A vLLM engine (``vllm.LLM``) for ``vllm_chat``; load it once for several calls."""
    from vllm import LLM

    return LLM(model=name_or_path, dtype=dtype or "auto", seed=seed, tensor_parallel_size=tensor_parallel_size,
               gpu_memory_utilization=gpu_memory_utilization)


def vllm_chat(llm, prompts: Sequence[list[dict]], *, temperature: float = 0.7, top_p: float = 0.9,
              max_new_tokens: int = 1200, num_return_sequences: int = 1, chat_template: str = "",
              chat_template_kwargs: Mapping[str, Any] | None = None,
              sampling_defaults: Mapping[str, Any] | None = None) -> list[list[str]]:
    """Sample with a loaded engine (``load_vllm``); one list of responses per chat prompt. A later call on the same
    engine continues its random stream, so it draws new samples. ``chat_template_kwargs`` go to the chat template
    (``LLM.chat(chat_template_kwargs=...)``); ``sampling_defaults`` (``checkpoint_sampling_defaults`` of the
    engine's model: top-k, repetition penalty) join the sampling parameters, as transformers' generate applies them
    (``vllm_sampling_kwargs``; None: vLLM's own defaults)."""
    from vllm import SamplingParams

    prompts = _clean_prompts(prompts)
    params = SamplingParams(**vllm_sampling_kwargs(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                                   num_return_sequences=num_return_sequences,
                                                   defaults=sampling_defaults))
    kwargs: dict[str, Any] = {"chat_template": chat_template} if chat_template else {}
    if chat_template_kwargs:
        kwargs["chat_template_kwargs"] = dict(chat_template_kwargs)
    results = llm.chat(list(prompts), params, use_tqdm=True, **kwargs)
    return [[o.text.strip() for o in r.outputs] for r in results]
