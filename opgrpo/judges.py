"""Yes/No LLM judges: a local transformers causal LM and an OpenAI-compatible HTTP chat endpoint.

Both expose ``prob_yes(prompts) -> list[float | None]`` (``None`` = no usable answer for that prompt), which
is all the estimator's triplet mining needs. ``YesNoLM`` reads P(yes) from the next-token logits in one
forward pass per batch; ``ChatEndpoint`` asks a server (vLLM, llama.cpp, OpenAI, ...) and parses the reply.
``make_judge(kind, **kwargs)`` builds one from config ("transformers" | "http" | "none").
"""
from __future__ import annotations

import http.client
import inspect
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

logger = logging.getLogger(__name__)

_NETWORK_ERRORS = (OSError, http.client.HTTPException)  # OSError covers URLError, time-outs, resets
YES_VARIANTS = ("Yes", " Yes", "yes")
NO_VARIANTS = ("No", " No", "no")


from opgrpo.devices import resolve_device as _resolve_device  # noqa: E402
from opgrpo.devices import resolve_dtype as _resolve_dtype  # noqa: E402


class JudgeUnavailable(RuntimeError):
    """The judge cannot be used at all (endpoint unreachable, authentication refused)."""


class Judge(Protocol):
    def prob_yes(self, prompts: list[str]) -> list[float | None]: ...


class YesNoLM:
    """Instruction-tuned causal LM answering Yes/No; P(yes) from the next-token distribution.

    P(yes) = softmax over the logits of the single-token "Yes"/" Yes"/"yes" and "No"/" No"/"no" variants,
    summed over the Yes variants, at the first generated position after the chat template's
    generation prompt.
    """

    def __init__(self, model_name_or_path: str, *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, max_length: int = 1024, system_prompt: str = "",
                 progress: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = _resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        self.system_prompt = system_prompt
        self.progress = progress
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_name_or_path), dtype=_resolve_dtype(dtype, self.device))
        self.model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.yes_ids = self._single_token_ids(YES_VARIANTS)
        self.no_ids = self._single_token_ids(NO_VARIANTS)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"tokenizer of {model_name_or_path} has no single-token Yes/No variants")
        self._variant_ids = torch.tensor(self.yes_ids + self.no_ids, device=self.device)
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = "logits_to_keep" in params
        self._pos_kw = "position_ids" in params
        self.truncated = 0

    def _single_token_ids(self, variants) -> list[int]:
        ids: list[int] = []
        for v in variants:
            toks = self.tokenizer.encode(v, add_special_tokens=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    def _render(self, content: str) -> list[int]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": content})
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:  # base model without template: plain prompt ending in an answer cue
            text = (self.system_prompt + "\n\n" if self.system_prompt else "") + content + "\nAnswer:"
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of the templated prompt, cut from the left of the user content to fit max_length."""
        ids = self._render(prompt)
        if len(ids) <= self.max_length:
            return ids
        self.truncated += 1
        content_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        excess = len(ids) - self.max_length
        for _ in range(4):  # decode/re-encode may shift a token or two
            keep = len(content_ids) - excess
            if keep <= 0:
                break
            ids = self._render(self.tokenizer.decode(content_ids[-keep:]))
            if len(ids) <= self.max_length:
                return ids
            excess += len(ids) - self.max_length + 2
        # template overhead alone is too long: keep the end, which holds the generation prompt
        return ids[-self.max_length:]

    def prob_yes(self, prompts: list[str]) -> list[float]:
        import torch

        prompts = ["" if p is None else str(p) for p in prompts]
        encoded = [self.encode_prompt(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding per batch
        out: list[float] = [0.0] * len(encoded)
        starts = range(0, len(order), self.batch_size)
        if self.progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="judge", unit="batch")
        with torch.inference_mode():
            for s in starts:
                idx = order[s:s + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):  # left padding: the last column is every row's next position
                    n = len(encoded[i])
                    ids[r, width - n:] = torch.tensor(encoded[i], dtype=torch.long)
                    mask[r, width - n:] = 1
                kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
                if self._pos_kw:  # positions restart at 0 after the padding, as for an unpadded prompt
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
                if self._keep_kw:
                    kwargs["logits_to_keep"] = 1
                logits = self.model(**kwargs).logits[:, -1, :].float()
                probs = torch.softmax(logits.index_select(-1, self._variant_ids), dim=-1)
                p_yes = probs[:, :len(self.yes_ids)].sum(-1).clamp(0.0, 1.0).tolist()
                for r, i in enumerate(idx):
                    out[i] = float(p_yes[r])
        return out


_YES_NO_START = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)
_YES_WORD = re.compile(r"\byes\b", re.IGNORECASE)
_NO_WORD = re.compile(r"\bno\b", re.IGNORECASE)


def parse_yes_no(reply: str | None) -> float | None:
    """1.0 for a Yes reply, 0.0 for No, None when it is neither (or both words appear without a lead)."""
    if not reply:
        return None
    m = _YES_NO_START.match(reply.strip())
    if m:
        return 1.0 if m.group(1).lower() == "yes" else 0.0
    has_yes, has_no = bool(_YES_WORD.search(reply)), bool(_NO_WORD.search(reply))
    if has_yes != has_no:
        return 1.0 if has_yes else 0.0
    return None


class ChatEndpoint:
    """OpenAI-compatible ``/chat/completions`` endpoint via urllib (no extra dependency).

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``. The API key is read from the
    environment variable ``api_key_env`` (optional for local servers); it is never logged or put into
    exception messages. ``errors`` counts prompts that failed after retries, ``unparseable`` replies that
    were neither Yes nor No.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 30.0, max_retries: int = 2, max_workers: int = 4,
                 system_prompt: str = "", retry_backoff: float = 0.5):
        if not base_url:
            raise ValueError("ChatEndpoint needs a base_url (e.g. http://127.0.0.1:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.max_workers = max(1, int(max_workers))
        self.system_prompt = system_prompt
        self.retry_backoff = float(retry_backoff)
        self.errors = 0
        self.unparseable = 0
        self._lock = threading.Lock()

    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def _scrub(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def _request(self, path: str, payload: dict | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers,
                                     method="POST" if payload is not None else "GET")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8", errors="replace"))

    @staticmethod
    def _reason(exc: BaseException) -> str:
        if isinstance(exc, urllib.error.HTTPError):
            return f"HTTP {exc.code} {exc.reason}"
        if isinstance(exc, urllib.error.URLError):
            return f"{type(exc.reason).__name__}: {exc.reason}"
        return f"{type(exc).__name__}: {exc}"

    def check(self) -> None:
        """Raise JudgeUnavailable unless the server answers (a 404 on /models still counts as up)."""
        try:
            self._request("/models", None)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise JudgeUnavailable(
                    f"judge endpoint {self.base_url} refused authentication ({self._reason(exc)}); "
                    f"check the API key in ${self.api_key_env}") from None
            if exc.code >= 500:
                raise JudgeUnavailable(
                    f"judge endpoint {self.base_url} is failing: {self._scrub(self._reason(exc))}") from None
        except _NETWORK_ERRORS as exc:
            raise JudgeUnavailable(
                f"judge endpoint {self.base_url} is unreachable: {self._scrub(self._reason(exc))}") from None
        except ValueError:  # answered, but not JSON: still reachable
            pass

    def _complete_one(self, prompt: str, max_tokens: int, temperature: float) -> str | None:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": prompt})
        payload = {"model": self.model, "messages": msgs, "max_tokens": max_tokens,
                   "temperature": temperature}
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                body = self._request("/chat/completions", payload)
                content = body["choices"][0]["message"]["content"]
                return "" if content is None else str(content)
            except urllib.error.HTTPError as exc:
                last = self._reason(exc)
                if exc.code in (400, 401, 403, 404, 422):  # will not get better by retrying
                    break
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                last = f"malformed response ({type(exc).__name__})"
            except _NETWORK_ERRORS as exc:
                last = self._reason(exc)
            if attempt < self.max_retries and self.retry_backoff > 0:
                time.sleep(self.retry_backoff * (2 ** attempt))
        with self._lock:
            self.errors += 1
        logger.warning("judge request to %s failed after %d attempt(s): %s",
                       self.base_url, self.max_retries + 1, self._scrub(last))
        return None

    def complete(self, prompts: list[str], *, max_tokens: int = 16,
                 temperature: float = 0.0) -> list[str | None]:
        prompts = ["" if p is None else str(p) for p in prompts]
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(prompts))) as pool:
            return list(pool.map(lambda p: self._complete_one(p, max_tokens, temperature), prompts))

    def prob_yes(self, prompts: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for reply in self.complete(prompts, max_tokens=16, temperature=0.0):
            p = parse_yes_no(reply)
            if p is None and reply is not None:
                with self._lock:
                    self.unparseable += 1
                logger.info("unparseable judge reply: %r", reply[:80])
            out.append(p)
        return out


def make_judge(kind: str, **kwargs) -> Judge | None:
    """Build a judge: "transformers" -> YesNoLM(model_name_or_path, ...), "http" -> ChatEndpoint(base_url,
    model, ...), "none" (or "") -> None. ``model`` is accepted as an alias of ``model_name_or_path``."""
    kind = (kind or "none").lower()
    if kind == "none":
        return None
    if kind == "transformers":
        if "model" in kwargs:
            kwargs["model_name_or_path"] = kwargs.pop("model")
        if not kwargs.get("model_name_or_path"):
            raise ValueError("judge kind 'transformers' needs a model (hub id or local path)")
        return YesNoLM(**kwargs)
    if kind == "http":
        return ChatEndpoint(**kwargs)
    raise ValueError(f"judge kind must be 'transformers', 'http' or 'none'; got {kind!r}")
