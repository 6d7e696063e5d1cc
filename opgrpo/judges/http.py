"""A Yes/No and chat judge behind an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp, OpenAI, ...).

``ChatEndpoint`` sends each prompt as one user message via urllib (no extra dependency), a few requests
at a time, with retries; ``complete`` returns the replies and ``prob_yes`` parses them with
``parse_yes_no`` (1.0, 0.0 or None). ``check`` raises ``JudgeUnavailable`` when the server cannot be used at
all, so a run fails before any model loads. Prompts are cleaned first (``opgrpo.text.clean``: a lone
surrogate would reach the server as an invalid JSON escape), counted in ``cleaned``.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from opgrpo.text.clean import clean_texts

logger = logging.getLogger(__name__)

_NETWORK_ERRORS = (OSError, http.client.HTTPException)  # OSError covers URLError, time-outs, resets


class JudgeUnavailable(RuntimeError):
    """The judge cannot be used at all (endpoint unreachable, authentication refused)."""


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
    were neither Yes nor No, ``cleaned`` prompts that held lone surrogates or control characters.
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
        self.cleaned = 0
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
        prompts, changed = clean_texts(["" if p is None else str(p) for p in prompts],
                                       where=f"judge {self.base_url}", log=logger, what="prompt")
        self.cleaned += changed
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
