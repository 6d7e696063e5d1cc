"""A Yes/No and chat judge behind an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp, OpenAI, ...).

``ChatEndpoint`` talks to the server through the ``openai`` SDK (``openai.OpenAI(base_url=..., api_key=...)``):
the SDK owns the HTTP client, time-outs and retries (``max_retries``, exponential back-off, honouring a
server's ``Retry-After`` / ``Retry-After-Ms`` on 429 and 5xx replies). Prompts are sent a few at a time from
a thread pool over one shared client (the SDK client is thread-safe), one user message each.

``complete`` returns the replies. With ``mode="generate"`` (the authors' judge), ``prob_yes`` asks for a
greedy reply of ``max_new_tokens`` and reads it with ``opgrpo.judges.yesno.answer_verdict`` (1.0 when "yes"
occurs in the answer line, else 0.0);
with ``chat_template=False`` the prompt goes as plain text to the ``/completions`` endpoint (no chat
template; vLLM and most local servers have it, chat-only APIs do not). Otherwise (``mode="logprob"``)
``prob_yes`` asks for ``logprobs``/``top_logprobs`` and reads P(Yes) like the
local ``opgrpo.judges.YesNoLM``: at the first answer token that is a Yes or No, the probability mass of its
Yes variants over that of its Yes and No variants among the top log-probabilities. Where the server gives no
log-probabilities (or refuses the parameter, then it is not asked again), the reply text is parsed by
``parse_yes_no`` (1.0, 0.0 or None). ``check`` raises ``JudgeUnavailable`` when the server cannot be used at
all, so a run fails before any model loads. A request that fails for good is counted in ``errors`` and its reason,
in the server's own words (``HTTP 404: model 'x' not found``), in ``failures``, so that a caller can fail with it.

``probe_endpoint`` (plain arguments) sends one short completion request, as the judge will, and says which setting
is wrong when the endpoint cannot serve the judge: an unknown model (404), refused credentials, an unreachable or
failing server; the start-up check of a run calls it (opgrpo.app.validate).

Hand-written here, because the SDK has no such thing: the Yes/No reading of log-probabilities and of text,
the thread pool (the SDK sends one request per call), the counters, and the scrubbing of the API key from
anything logged. The key is read from the environment variable ``api_key_env`` and never logged or put into
exception messages. Prompts are cleaned first (``opgrpo.text.clean``: a lone surrogate would reach the server
as an invalid JSON escape), counted in ``cleaned``.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opgrpo.judges.yesno import JUDGE_MODES, answer_is_clear, answer_verdict
from opgrpo.text.clean import clean_texts
from opgrpo.utils.redact import redact

logger = logging.getLogger(__name__)

NO_KEY = "EMPTY"
"""The API key sent when ``api_key_env`` is unset or empty (local servers such as vLLM accept any key)."""


class JudgeUnavailable(RuntimeError):
    """The judge cannot be used at all (endpoint unreachable, authentication refused)."""


_YES_NO_START = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)
_YES_WORD = re.compile(r"\byes\b", re.IGNORECASE)
_NO_WORD = re.compile(r"\bno\b", re.IGNORECASE)
_YES_NO_TOKEN = re.compile(r"^[\W_]*(yes|no)[\W_]*$", re.IGNORECASE)


def server_words(exc: BaseException, limit: int = 200) -> str:
    """What the server said about an HTTP error (the ``message``/``detail``/``error`` of its JSON body, or the body's
    text), on one line and at most ``limit`` characters; "" when it said nothing (or ``exc`` is no HTTP error)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body.get("error") or ""
        if isinstance(body, dict):  # {"error": {"message": ...}} one level down
            body = body.get("message") or ""
    words = " ".join(str(body or "").split())
    return words if len(words) <= limit else words[:limit - 3] + "..."


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


def _yes_no_of(token: Any) -> str | None:
    m = _YES_NO_TOKEN.match(str(token or ""))
    return m.group(1).lower() if m else None


def prob_yes_from_logprobs(content: list[Any] | None) -> float | None:
    """P(Yes) from a chat completion's ``choices[0].logprobs.content`` (None when it holds no Yes/No token).

    At the first position whose sampled token is a Yes or No variant ("Yes", " yes", "**No" ...), the
    probabilities of all Yes and No variants among that position's ``top_logprobs`` (and the sampled token)
    are summed; P(Yes) is the Yes share, as ``YesNoLM`` renormalises over its Yes/No tokens.
    """
    for pos in content or []:
        if _yes_no_of(getattr(pos, "token", None)) is None:
            continue
        candidates = {str(pos.token): pos.logprob}
        for alt in getattr(pos, "top_logprobs", None) or []:
            candidates.setdefault(str(alt.token), alt.logprob)
        mass = {"yes": 0.0, "no": 0.0}
        for token, logprob in candidates.items():
            word = _yes_no_of(token)
            if word is not None and logprob is not None and math.isfinite(float(logprob)):
                mass[word] += math.exp(float(logprob))
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
    return None


class ChatEndpoint:
    """OpenAI-compatible ``/chat/completions`` endpoint through the ``openai`` SDK.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``. The API key is read from the
    environment variable ``api_key_env`` (optional for local servers); it is never logged or put into
    exception messages. ``timeout`` is per request; ``max_retries`` is the SDK's (429, 5xx, time-outs and
    dropped connections are retried with back-off, ``Retry-After`` honoured). ``top_logprobs`` alternatives
    are asked for per token by ``prob_yes`` (0 asks for no log-probabilities: replies are parsed).

    Counters: ``errors`` prompts that failed after retries, ``unparseable`` replies that were neither Yes nor
    No, ``from_logprobs`` answers read from log-probabilities (the rest were parsed from text), ``cleaned``
    prompts that held lone surrogates or control characters.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 30.0, max_retries: int = 2, max_workers: int = 4,
                 system_prompt: str = "", top_logprobs: int = 5, mode: str = "logprob", chat_template: bool = True,
                 max_new_tokens: int = 10):
        if not base_url:
            raise ValueError("ChatEndpoint needs a base_url (e.g. http://127.0.0.1:8000/v1)")
        if mode not in JUDGE_MODES:
            raise ValueError(f"Yes/No judge mode must be one of {JUDGE_MODES}; got {mode!r}")
        if mode == "logprob" and not chat_template:
            raise ValueError("mode 'logprob' reads chat-completion logprobs: it needs chat_template=True")
        import openai

        self.base_url = base_url.rstrip("/")
        self.where = redact(self.base_url)
        """``base_url`` as messages and logs show it: credentials in the URL (``user:password@``) hidden."""
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.max_workers = max(1, int(max_workers))
        self.system_prompt = system_prompt
        self.mode = mode
        self.chat_template = bool(chat_template)
        self.max_new_tokens = max(1, int(max_new_tokens))
        self.top_logprobs = max(0, min(20, int(top_logprobs)))  # the OpenAI API allows 0..20
        self.errors = 0
        self.failures: Counter[str] = Counter()
        """Why requests failed for good: reason (``HTTP 500: boom``, ``APIConnectionError: ...``; no key) -> count."""
        self.unparseable = 0
        self.from_logprobs = 0
        self.cleaned = 0
        self._logprobs_ok = self.top_logprobs > 0
        self._lock = threading.Lock()
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self._key() or NO_KEY, timeout=self.timeout,
                                    max_retries=self.max_retries)

    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def _scrub(self, text: str) -> str:
        """``text`` without the API key and without credentials in any URL."""
        key = self._key()
        return redact(text.replace(key, "***") if key else text)

    @staticmethod
    def _reason(exc: BaseException) -> str:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code}"
        return f"{type(exc).__name__}: {exc}"

    @classmethod
    def _failure(cls, exc: BaseException) -> str:
        """``_reason`` with the server's own words for an HTTP error (``HTTP 404: model 'x' not found``)."""
        words = server_words(exc)
        return f"{cls._reason(exc)}: {words}" if words else cls._reason(exc)

    def check(self) -> None:
        """Raise JudgeUnavailable unless the server answers (a 404 on /models still counts as up). No retries."""
        import openai

        try:
            self.client.with_options(max_retries=0).models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise JudgeUnavailable(
                f"judge endpoint {self.where} refused authentication ({self._reason(exc)}); "
                f"check the API key in ${self.api_key_env}") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise JudgeUnavailable(
                    f"judge endpoint {self.where} is failing: {self._scrub(self._reason(exc))}") from None
        except openai.APIConnectionError as exc:  # time-outs included
            raise JudgeUnavailable(
                f"judge endpoint {self.where} is unreachable: {self._scrub(self._reason(exc))}") from None
        except (openai.APIError, ValueError):  # answered, but not a model list: still reachable
            pass

    def _ask(self, prompt: str, max_tokens: int, temperature: float, logprobs: bool) -> tuple[str | None, Any]:
        """``(reply text, logprobs content or None)``; ``(None, None)`` after the SDK's retries failed."""
        import openai

        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": prompt})
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": self.top_logprobs} if logprobs else {}
        create = self.client.chat.completions.create
        try:
            if not self.chat_template:  # plain text to /completions: no chat template, no logprobs read
                text = (self.system_prompt + "\n\n" if self.system_prompt else "") + prompt
                reply = self.client.completions.create(model=self.model, prompt=text, max_tokens=max_tokens,
                                                       temperature=temperature)
                content = reply.choices[0].text
                return ("" if content is None else str(content)), None
            try:
                reply = create(model=self.model, messages=msgs, max_tokens=max_tokens, temperature=temperature,
                               **extra)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                if not extra:
                    raise
                # asked again without logprobs; only if that works were the logprobs what the server refused
                reply = create(model=self.model, messages=msgs, max_tokens=max_tokens, temperature=temperature)
                with self._lock:
                    warn, self._logprobs_ok = self._logprobs_ok, False
                if warn:
                    logger.warning("judge endpoint %s refused logprobs; parsing Yes/No from the reply text from "
                                   "now on", self.where)
            choice = reply.choices[0]
            content = choice.message.content
            lp = getattr(getattr(choice, "logprobs", None), "content", None)
            return ("" if content is None else str(content)), lp
        except (openai.OpenAIError, AttributeError, IndexError, TypeError, ValueError) as exc:
            reason = self._scrub(self._failure(exc)) if isinstance(exc, openai.OpenAIError) else \
                f"malformed response ({type(exc).__name__})"
            retried = isinstance(exc, openai.APIConnectionError) or (  # what the SDK retries
                isinstance(exc, openai.APIStatusError) and (exc.status_code in (408, 409, 429) or exc.status_code >= 500))
            with self._lock:
                self.errors += 1
                self.failures[reason] += 1
            logger.warning("judge request to %s failed after %d attempt(s): %s",
                           self.where, self.max_retries + 1 if retried else 1, reason)
            return None, None

    def _map(self, prompts: list[str], fn) -> list:
        prompts, changed = clean_texts(["" if p is None else str(p) for p in prompts],
                                       where=f"judge {self.where}", log=logger, what="prompt")
        self.cleaned += changed
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(prompts))) as pool:
            return list(pool.map(fn, prompts))

    def complete(self, prompts: list[str], *, max_tokens: int = 16,
                 temperature: float = 0.0) -> list[str | None]:
        return self._map(prompts, lambda p: self._ask(p, max_tokens, temperature, logprobs=False)[0])

    def _prob_yes_one(self, prompt: str) -> float | None:
        if self.mode == "generate":
            reply = self._ask(prompt, self.max_new_tokens, 0.0, logprobs=False)[0]
            if reply is not None and not answer_is_clear(reply):
                with self._lock:
                    self.unparseable += 1
                logger.info("unclear judge reply (read as %s): %r", "Yes" if answer_verdict(reply) else "No",
                            reply[:80])
            return answer_verdict(reply)
        reply, lp = self._ask(prompt, 16, 0.0, logprobs=self._logprobs_ok)
        p = prob_yes_from_logprobs(lp)
        if p is not None:
            with self._lock:
                self.from_logprobs += 1
            return p
        p = parse_yes_no(reply)
        if p is None and reply is not None:
            with self._lock:
                self.unparseable += 1
            logger.info("unparseable judge reply: %r", reply[:80])
        return p

    def prob_yes(self, prompts: list[str]) -> list[float | None]:
        return self._map(prompts, self._prob_yes_one)


PROBE_PROMPT = "Answer Yes or No: is this a test?"
"""What ``probe_endpoint`` asks (one token of answer is all it reads: whether there is one)."""


def probe_endpoint(base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", chat_template: bool = True,
                   timeout: float = 10.0) -> tuple[str, str] | None:
    """Ask ``model`` at ``base_url`` one short question (one token, no retries, ``timeout`` seconds), on the endpoint
    the judge will use (``/chat/completions``, or ``/completions`` when ``chat_template`` is False).

    None when it answers (or is only busy: 408, 409, 429; or refuses the request for a reason that is not the
    model's: the judge's own requests differ); else ``(setting, message)``, where setting is the judge setting to
    fix and the message quotes the endpoint: "model" for a 404 (the models the endpoint lists, when it lists any) or
    a 400/422 about the model, "api_key_env" for 401/403, "base_url" when the server is unreachable, does not answer
    in time or fails (5xx). Credentials in the URL and the API key never appear in the message.
    """
    import openai

    key = os.environ.get(api_key_env, "") if api_key_env else ""
    where = redact(base_url.rstrip("/"))

    def scrub(text: str) -> str:
        return redact(text.replace(key, "***") if key else text)

    client = openai.OpenAI(base_url=base_url.rstrip("/"), api_key=key or NO_KEY, timeout=timeout, max_retries=0)
    try:
        if chat_template:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROBE_PROMPT}],
                                           max_tokens=1, temperature=0.0)
        else:
            client.completions.create(model=model, prompt=PROBE_PROMPT + "\nAnswer:", max_tokens=1, temperature=0.0)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        return "api_key_env", scrub(f"judge endpoint {where} refused authentication ({ChatEndpoint._failure(exc)}); "
                                    f"check the API key in ${api_key_env}")
    except openai.APIStatusError as exc:
        failure, words = ChatEndpoint._failure(exc), server_words(exc).lower()
        if exc.status_code == 404 or (exc.status_code in (400, 422) and "model" in words):
            return "model", scrub(f"judge endpoint {where} does not serve model {model!r}: {failure}"
                                  + _served_models(client))
        if exc.status_code >= 500:
            return "base_url", scrub(f"judge endpoint {where} is failing: {failure}")
    except openai.APITimeoutError:
        return "base_url", f"judge endpoint {where} did not answer within {timeout:g} s"
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        return "base_url", scrub(f"judge endpoint {where} is unreachable: {type(cause).__name__}: {cause}")
    except (openai.OpenAIError, ValueError):  # answered, if oddly: the judge's own requests will tell
        pass
    return None


def _served_models(client: Any, limit: int = 10) -> str:
    """`` (it serves: a, b)`` from the endpoint's ``/models`` list; a hint about ``base_url`` when that is missing
    too (a wrong API root answers 404 to everything); "" when the list cannot be read."""
    import openai

    try:
        ids = [m.id for m in client.models.list()]
    except openai.NotFoundError:
        return "; its /models is not found either: is base_url the API root (e.g. http://host:8000/v1)?"
    except (openai.OpenAIError, AttributeError, TypeError, ValueError):
        return ""
    if not ids:
        return ""
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f" (it serves: {', '.join(map(str, ids[:limit]))}{more})"
