"""Judges: a tiny random Llama through YesNoLM, ChatEndpoint (the openai SDK) against a local OpenAI-compatible
stub server with and without logprobs, and the one builder (opgrpo.judges.build_judge) for every kind and purpose."""
import json
import logging
import math
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from helpers import JsonHandler

from opgrpo.judges import (
    ChatEndpoint,
    JudgeUnavailable,
    LabelJudge,
    LocalChatJudge,
    PairQuery,
    YesNoLM,
    answer_is_clear,
    answer_line,
    answer_verdict,
    build_judge,
    parse_yes_no,
    prob_yes_from_logprobs,
)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from opgrpo.app.resources import smollm_path

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(smollm_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # random init is near-uniform; widen the logits so P(yes) varies by prompt
        model.lm_head.weight.mul_(4.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


PROMPTS = ["Do these match? Answer Yes or No.", "Short.",
           ("A much longer prompt about honesty and duty to family, does it say the same thing as the other "
            "sentence about loyalty? Answer Yes or No."), "", "Two sentences: one about care, one about harm."]


def test_yes_no_token_ids_are_the_single_token_variants(tiny_llama):
    judge = YesNoLM(str(tiny_llama), device="cpu", dtype="float32")
    tok = judge.tokenizer
    assert judge.yes_ids == [tok.encode(v, add_special_tokens=False)[0] for v in ("Yes", " Yes", "yes")]
    assert judge.no_ids == [tok.encode(v, add_special_tokens=False)[0] for v in ("No", " No", "no")]
    assert len(set(judge.yes_ids + judge.no_ids)) == 6


def test_prob_yes_matches_manual_softmax_and_batching(tiny_llama):
    judge = YesNoLM(str(tiny_llama), device="cpu", dtype="float32", batch_size=3)
    batched = judge.prob_yes(PROMPTS)
    assert len(batched) == len(PROMPTS)
    assert all(0.0 <= p <= 1.0 for p in batched)
    single = [judge.prob_yes([p])[0] for p in PROMPTS]
    assert batched == pytest.approx(single, abs=1e-4)
    assert max(batched) - min(batched) > 1e-3  # depends on the prompt

    # by hand: unpadded forward, softmax over the six variant logits, Yes mass
    tok = judge.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], tokenize=False,
                                   add_generation_prompt=True)
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        logits = judge.model(input_ids=ids).logits[0, -1]
    v = logits[judge.yes_ids + judge.no_ids]
    expected = torch.softmax(v, -1)[:3].sum().item()
    assert batched[0] == pytest.approx(expected, abs=1e-5)
    assert judge.prob_yes([]) == []


def test_long_prompt_is_cut_from_the_left(tiny_llama):
    judge = YesNoLM(str(tiny_llama), device="cpu", dtype="float32", max_length=48,
                    system_prompt="You judge perspectives.")
    long_prompt = "filler words " * 200 + "FINAL QUESTION Answer Yes or No."
    ids = judge.encode_prompt(long_prompt)
    assert len(ids) <= 48
    text = judge.tokenizer.decode(ids)
    assert "You judge perspectives." in text  # template and system prompt kept
    assert "Answer Yes or No." in text  # the end of the user content kept
    assert text.rstrip().endswith("assistant")  # generation prompt kept
    assert judge.truncated == 1
    p = judge.prob_yes([long_prompt])
    assert 0.0 <= p[0] <= 1.0


def test_build_judge_none_labels_and_unknown_kinds():
    assert build_judge("none") is None and build_judge("") is None and build_judge("none", purpose="chat") is None

    class Table:
        def get(self, item_id, name_a, name_b):
            return {("i", "a", "b"): True, ("i", "a", "c"): False}.get((item_id, name_a, name_b))

    judge = build_judge("labels", labels=Table(), unlabelled="skip")
    assert isinstance(judge, LabelJudge) and judge.abstains
    queries = [PairQuery("i", "s", "a", "x", b, "y") for b in ("b", "c", "d")]
    assert judge.prob_same(queries) == [1.0, 0.0, None]
    assert build_judge("labels", labels=Table()).prob_same(queries) == [1.0, 0.0, 0.0]  # unlabelled: different
    with pytest.raises(ValueError, match="estimator.judge: judge kind 'labels' needs pair labels"):
        build_judge("labels", section="estimator.judge")
    with pytest.raises(ValueError, match="unlabelled must be"):
        build_judge("labels", labels=Table(), unlabelled="same")
    with pytest.raises(ValueError, match=r"judge\.kind must be one of \('none', 'transformers', 'http'\)"):
        build_judge("labels", purpose="chat", labels=Table())  # no chat judge from labels
    with pytest.raises(ValueError, match="judge.kind must be one of"):
        build_judge("gpt")
    with pytest.raises(ValueError, match="judge purpose"):
        build_judge("none", purpose="essay")
    with pytest.raises(ValueError, match="judge_eval.model must be set for judge kind 'transformers'"):
        build_judge("transformers", purpose="chat", section="judge_eval")


def test_build_judge_transformers(tiny_lm):
    yes_no = build_judge("transformers", model=str(tiny_lm), device="cpu", dtype="float32", batch_size=3,
                         max_length=64, system_prompt="Judge.")
    assert isinstance(yes_no, YesNoLM)
    assert (yes_no.batch_size, yes_no.max_length, yes_no.system_prompt, yes_no.device) == (3, 64, "Judge.", "cpu")
    assert 0.0 <= yes_no.prob_yes(["Same? Answer Yes or No."])[0] <= 1.0
    chat = build_judge("TRANSFORMERS", purpose="chat", model=str(tiny_lm), device="cpu", batch_size=2)
    assert isinstance(chat, LocalChatJudge) and chat.batch_size == 2 and chat.max_length == 4096  # class default
    assert isinstance(chat.complete(["Hi"], max_tokens=2)[0], str)


def test_build_judge_http(stub_server):
    for purpose in ("yes_no", "chat"):
        judge = build_judge("http", purpose=purpose, base_url=stub_server, model="stub", timeout=2.0, max_retries=0,
                            max_workers=2, api_key_env="OPGRPO_TEST_KEY", system_prompt="Be brief.")
        assert isinstance(judge, ChatEndpoint)
        assert (judge.model, judge.max_retries, judge.max_workers, judge.system_prompt) == ("stub", 0, 2, "Be brief.")
    assert judge.prob_yes(["YES", "NO"]) == [1.0, 0.0]
    assert judge.complete(["NO"]) == ["No."]
    # settings left out keep ChatEndpoint's defaults; an unreachable endpoint is only checked with check=True
    ep = build_judge("http", base_url="http://127.0.0.1:1/v1", model="m", check=False)
    assert (ep.timeout, ep.max_retries, ep.max_workers, ep.api_key_env) == (30.0, 2, 4, "OPENAI_API_KEY")
    with pytest.raises(JudgeUnavailable, match="unreachable"):
        build_judge("http", base_url="http://127.0.0.1:1/v1", model="m", timeout=2.0)
    with pytest.raises(ValueError, match="base_url"):
        build_judge("http", model="m")
    with pytest.raises(ValueError, match="estimator.judge.model must be set for judge kind 'http'"):
        build_judge("http", base_url=stub_server, section="estimator.judge")


@pytest.mark.parametrize("reply,expected", [
    ("Yes", 1.0), ("yes.", 1.0), (" **No**, they differ", 0.0), ("no", 0.0),
    ("I think yes", 1.0), ("The answer is no", 0.0), ("Maybe", None), ("yes and no", 1.0),
    ("Both yes and no apply", None), ("", None), (None, None), ("Nope", None)])
def test_parse_yes_no(reply, expected):
    assert parse_yes_no(reply) == expected


# --- HTTP stub: a local OpenAI-compatible server, talked to through the real openai SDK ---------------


def _lp(token, p, alts=()):
    """One ``logprobs.content`` entry: the sampled token with probability p and (token, prob) alternatives."""
    top = [{"token": t, "logprob": math.log(q), "bytes": None} for t, q in [(token, p), *alts]]
    return {"token": token, "logprob": math.log(p), "bytes": None, "top_logprobs": top}


# replies per prompt keyword: text, and the logprobs.content a logprobs-giving server adds
REPLIES = {
    "YES": ("Yes, same perspective.", [_lp("Yes", 0.7, [("No", 0.2), (" yes", 0.05), ("Maybe", 0.05)]),
                                       _lp(",", 0.9)]),
    "BOLD": ("**No**", [_lp("**", 0.8, [("Yes", 0.1)]), _lp("No", 0.6, [("Yes", 0.3), ("Maybe", 0.1)]),
                        _lp("**", 0.99)]),
    "NO": ("No.", [_lp("No", 0.9, [("Yes", 0.1)]), _lp(".", 0.9)]),
    "GARBAGE": ("Perhaps, hard to say.", [_lp("Perhaps", 0.9, [("Maybe", 0.1)])]),
}


class _Stub(JsonHandler):
    mode: ClassVar[str] = "text"  # "text" (never logprobs), "logprobs", "reject_logprobs" (400 when asked)
    calls: ClassVar[list] = []
    payloads: ClassVar[list] = []
    paths: ClassVar[list] = []
    auth: ClassVar[list] = []
    times: ClassVar[list] = []


    def do_GET(self):
        if self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0,
                                                         "owned_by": "test"}]})
        else:
            self._send(404, {})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(n))
        plain = not self.path.endswith("/chat/completions")  # /completions: a plain-text prompt
        prompt = payload["prompt"] if plain else payload["messages"][-1]["content"]
        cls = type(self)
        cls.paths.append(self.path)
        cls.calls.append(prompt)
        cls.payloads.append(payload)
        cls.auth.append(self.headers.get("Authorization"))
        cls.times.append(time.monotonic())
        if "FAIL" in prompt:  # a short Retry-After-Ms keeps the SDK's retries quick
            return self._send(500, {"error": {"message": "boom"}}, [("Retry-After-Ms", "10")])
        if "RATE" in prompt and cls.calls.count(prompt) == 1:
            return self._send(429, {"error": {"message": "slow down"}}, [("Retry-After", "1")])
        if "SLOW" in prompt:
            time.sleep(1.0)
        if "BAD" in prompt:  # a request the server rejects whatever is asked
            return self._send(400, {"error": {"message": "prompt too long"}})
        if payload.get("logprobs") and cls.mode == "reject_logprobs":
            return self._send(400, {"error": {"message": "logprobs are not supported"}})
        key = next((k for k in REPLIES if k in prompt), "GARBAGE")
        text, content = REPLIES[key]
        if plain:
            return self._send(200, {"id": "c", "object": "text_completion", "created": 0, "model": payload["model"],
                                    "choices": [{"index": 0, "finish_reason": "stop", "text": " " + text,
                                                 "logprobs": None}]})
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        if payload.get("logprobs") and cls.mode == "logprobs":
            choice["logprobs"] = {"content": content}
        self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": payload["model"],
                         "choices": [choice]})


@pytest.fixture()
def stub_server():
    _Stub.mode, _Stub.calls, _Stub.payloads, _Stub.auth, _Stub.times, _Stub.paths = "text", [], [], [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


SECRET = "sk-test-secret-4711"


def test_chat_endpoint_yes_no_garbage_error_timeout(stub_server, monkeypatch, caplog):
    monkeypatch.setenv("OPGRPO_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs too: the key must not be in them
    ep = ChatEndpoint(stub_server, "stub", api_key_env="OPGRPO_TEST_KEY", timeout=0.3, max_retries=2,
                      max_workers=4)
    ep.check()
    probs = ep.prob_yes(["YES please", "NO please", "GARBAGE please", "FAIL please", "SLOW please"])
    assert probs == [1.0, 0.0, None, None, None]  # a text-only server: replies parsed
    assert ep.errors == 2  # FAIL and SLOW, after retries
    assert ep.unparseable == 1 and ep.from_logprobs == 0  # GARBAGE
    assert _Stub.calls.count("FAIL please") == 3  # 1 try + 2 SDK retries
    assert _Stub.calls.count("SLOW please") == 3
    assert set(_Stub.auth) == {f"Bearer {SECRET}"}
    assert _Stub.payloads[0]["logprobs"] is True and _Stub.payloads[0]["top_logprobs"] == 5
    assert SECRET not in caplog.text
    assert "failed after 3 attempt" in caplog.text
    assert ep.complete([]) == []


def test_chat_endpoint_reads_p_yes_from_logprobs(stub_server):
    _Stub.mode = "logprobs"
    ep = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=0)
    probs = ep.prob_yes(["YES please", "BOLD please", "NO please", "GARBAGE please"])
    # YES: Yes variants 0.7 + 0.05 over Yes/No mass 0.95; BOLD: at the first Yes/No token ("No", after "**"),
    # 0.3 / (0.6 + 0.3); NO: 0.1 / 1.0; GARBAGE: no Yes/No token, and the text says neither
    assert probs == pytest.approx([0.75 / 0.95, 1 / 3, 0.1, None], abs=1e-9)
    assert ep.from_logprobs == 3 and ep.unparseable == 1 and ep.errors == 0
    # the chat purpose asks for no logprobs
    assert ep.complete(["NO"]) == ["No."] and "logprobs" not in _Stub.payloads[-1]


def test_chat_endpoint_falls_back_to_text_when_logprobs_are_refused(stub_server, caplog):
    _Stub.mode = "reject_logprobs"
    ep = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=0, max_workers=1)
    with caplog.at_level(logging.WARNING, logger="opgrpo.judges"):
        assert ep.prob_yes(["YES please", "NO please"]) == [1.0, 0.0]
    # the first prompt was refused once and asked again without logprobs; the second was not asked for them
    assert _Stub.calls == ["YES please", "YES please", "NO please"]
    assert [("logprobs" in p) for p in _Stub.payloads] == [True, False, False]
    assert ep.errors == 0 and ep.from_logprobs == 0 and "refused logprobs" in caplog.text
    no_lp = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=0, top_logprobs=0)
    assert no_lp.prob_yes(["YES"]) == [1.0] and "logprobs" not in _Stub.payloads[-1]


def test_chat_endpoint_keeps_logprobs_after_a_bad_request(stub_server, caplog):
    _Stub.mode = "logprobs"
    ep = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=2, max_workers=1)
    with caplog.at_level(logging.WARNING, logger="opgrpo.judges"):
        probs = ep.prob_yes(["BAD YES", "NO please"])
    # the 400 is not about logprobs (it fails without them too): an error, not retried, logprobs still used
    assert probs == pytest.approx([None, 0.1]) and ep.errors == 1 and ep.from_logprobs == 1
    assert _Stub.calls == ["BAD YES", "BAD YES", "NO please"] and _Stub.payloads[-1]["logprobs"] is True
    assert "failed after 1 attempt(s): HTTP 400" in caplog.text and "refused logprobs" not in caplog.text


def test_chat_endpoint_honours_retry_after_on_429(stub_server):
    _Stub.mode = "logprobs"
    ep = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=1)
    assert ep.prob_yes(["RATE YES"]) == pytest.approx([0.75 / 0.95])
    assert _Stub.calls == ["RATE YES", "RATE YES"] and ep.errors == 0
    # the SDK waited the server's Retry-After: 1 s (its own first back-off would be at most 0.5 s)
    assert _Stub.times[1] - _Stub.times[0] >= 0.95
    ep0 = ChatEndpoint(stub_server, "stub", timeout=5.0, max_retries=0)
    assert ep0.prob_yes(["RATE NO"]) == [None] and ep0.errors == 1  # no retries left: counted as an error


def test_chat_endpoint_unreachable_raises_without_key(monkeypatch, caplog):
    monkeypatch.setenv("OPGRPO_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    ep = ChatEndpoint(url, "stub", api_key_env="OPGRPO_TEST_KEY", timeout=1.0, max_retries=0)
    with pytest.raises(JudgeUnavailable) as info:
        ep.check()
    assert url in str(info.value) and "unreachable" in str(info.value)
    assert SECRET not in str(info.value)
    assert ep.complete(["YES"]) == [None] and ep.errors == 1
    assert SECRET not in caplog.text


def test_chat_endpoint_auth_refused(stub_server, monkeypatch):
    class _Deny(_Stub):
        def do_GET(self):
            self._send(401, {"error": {"message": "bad key"}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPGRPO_TEST_KEY", SECRET)
        ep = ChatEndpoint(f"http://127.0.0.1:{server.server_address[1]}/v1", "stub", api_key_env="OPGRPO_TEST_KEY")
        with pytest.raises(JudgeUnavailable, match=r"refused authentication \(HTTP 401\).*\$OPGRPO_TEST_KEY") as info:
            ep.check()
        assert SECRET not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("content,expected", [
    ([], None), (None, None),
    ([SimpleNamespace(token=" YES", logprob=math.log(0.5), top_logprobs=[])], 1.0),  # no No alternative
    ([SimpleNamespace(token="no", logprob=math.log(0.4),
                      top_logprobs=[SimpleNamespace(token="no", logprob=math.log(0.4)),
                                    SimpleNamespace(token="Yes", logprob=math.log(0.4)),
                                    SimpleNamespace(token="Nope", logprob=math.log(0.2))])], 0.5),
])
def test_prob_yes_from_logprobs(content, expected):
    assert prob_yes_from_logprobs(content) == expected


# --- bad text (issue 16): every judge cleans its prompts before the model ---------------------------


def test_local_judges_clean_lone_surrogates_and_controls(tiny_llama, caplog):
    judge = YesNoLM(str(tiny_llama), device="cpu", dtype="float32", batch_size=2)
    with caplog.at_level(logging.WARNING, logger="opgrpo.judges"):
        bad = judge.prob_yes(["Same \ud800 perspective?\x00 Answer Yes or No.", "Short."])
    assert bad == pytest.approx(judge.prob_yes(["Same \ufffd perspective?  Answer Yes or No.", "Short."]), abs=1e-6)
    assert judge.cleaned == 1 and "1 prompt(s)" in caplog.text
    chat = LocalChatJudge(str(tiny_llama), device="cpu", dtype="float32", batch_size=2)
    assert chat.complete(["Hi \ud800"], max_tokens=3) == chat.complete(["Hi \ufffd"], max_tokens=3)
    assert chat.cleaned == 1


def test_chat_endpoint_sends_clean_prompts(stub_server):
    ep = ChatEndpoint(stub_server, "stub", timeout=2.0, max_retries=0)
    assert ep.prob_yes(["YES \ud800 please\x1b"]) == [1.0]
    assert _Stub.calls == ["YES \ufffd please "] and ep.cleaned == 1


# --- the authors' judge (issue 17): greedy reply, no chat template, verdict after "Answer:" ----------------


@pytest.mark.parametrize("reply,line,verdict,clear", [
    ("Answer: Yes\n", "Yes", 1.0, True),
    (" yes.", "yes.", 1.0, True),  # any case: the authors lower-cased the answer line
    ("No, they differ.", "No, they differ.", 0.0, True),
    ("Answer:\nYes", "Yes", 1.0, True),  # the line after "Answer:", leading blank lines stripped
    (" YES\n\nSentence A: x", "YES", 1.0, True),
    ("**Yes**", "**Yes**", 1.0, True),  # markup before the word
    ("No\nSentence A: x\nAnswer: Yes", "Yes", 1.0, True),  # after the reply's own last "Answer:", as theirs
    ("Maybe\nYes", "Maybe", 0.0, False),  # only the first line counts; a line without yes is No
    ("No, yes", "No, yes", 1.0, True),  # SPEC: "yes" anywhere in the line (the authors' "yes" in line.lower())
    ("YES.", "YES.", 1.0, True),
    ("Answer: no\nyes", "no", 0.0, True),  # the first line after the last "Answer:" is " no"
    ("Answer: yes\nAnswer: no", "no", 0.0, True),  # the last "Answer:" wins
    ("Answer: no\nAnswer: Yes", "Yes", 1.0, True),
    ("I think yes", "I think yes", 1.0, False),  # unclear form (counted), read by the substring rule
    ("Yesterday", "Yesterday", 1.0, False),  # the authors' substring test: not the word yes, still Yes
    ("", "", 0.0, False),
    (None, None, None, False),  # no reply at all: a failed request, not a No
])
def test_answer_verdict(reply, line, verdict, clear):
    assert answer_line(reply) == line
    assert answer_verdict(reply) == verdict
    assert answer_is_clear(reply) is clear


def test_generate_mode_plain_prompt_greedy_ten_tokens(tiny_llama):
    judge = YesNoLM(str(tiny_llama), device="cpu", dtype="float32", batch_size=2, mode="generate",
                    chat_template=False)
    tok = judge.tokenizer
    prompt = "Sentence A: x\nSentence B: y\nAnswer:"
    # no chat template: the tokens of tokenizer(prompt), as the authors called it
    assert judge.encode_prompt(prompt) == tok(prompt)["input_ids"]
    templated = YesNoLM(str(tiny_llama), device="cpu", dtype="float32")
    assert templated.encode_prompt(prompt) != tok(prompt)["input_ids"]  # the default wraps it in the template
    calls = []
    generate = judge.model.generate

    def spy(**kwargs):
        calls.append({k: kwargs[k] for k in ("max_new_tokens", "do_sample")})
        return generate(**kwargs)

    judge.model.generate = spy
    replies = judge.replies([prompt, "Short.", "Another prompt, a little longer than that."])
    assert calls == [{"max_new_tokens": 10, "do_sample": False}] * 2  # batches of 2
    assert all(isinstance(r, str) for r in replies)
    assert judge.replies([prompt]) == replies[:1]  # greedy: the same reply alone or padded in a batch
    # the verdicts are answer_verdict of the replies (the random model's replies are neither yes nor no)
    judge.replies = lambda prompts: [" Yes\n", "no", "Perhaps"][:len(prompts)]
    assert judge.prob_yes(["a", "b", "c"]) == [1.0, 0.0, 0.0] and judge.unparseable == 1


def test_build_judge_passes_the_yes_no_mode(tiny_lm, stub_server):
    local = build_judge("transformers", model=str(tiny_lm), device="cpu", mode="generate", chat_template=False,
                        max_new_tokens=3)
    assert (local.mode, local.chat_template, local.max_new_tokens) == ("generate", False, 3)
    assert (YesNoLM.__init__.__kwdefaults__["mode"], YesNoLM.__init__.__kwdefaults__["chat_template"]) == (
        "logprob", True)  # the NLI backend's judge keeps P(Yes) through the template
    ep = build_judge("http", base_url=stub_server, model="stub", mode="generate", chat_template=False)
    assert (ep.mode, ep.chat_template, ep.max_new_tokens) == ("generate", False, 10)
    chat = build_judge("http", purpose="chat", base_url=stub_server, model="stub", mode="generate",
                       chat_template=False)
    assert (chat.mode, chat.chat_template) == ("logprob", True)  # the chat purpose ignores the Yes/No settings
    with pytest.raises(ValueError, match="estimator.judge.chat_template"):
        build_judge("http", base_url=stub_server, model="stub", mode="logprob", chat_template=False,
                    section="estimator.judge")
    with pytest.raises(ValueError, match="estimator.judge.mode"):
        build_judge("transformers", model=str(tiny_lm), mode="vote", section="estimator.judge")


def test_chat_endpoint_generate_mode_without_template_uses_completions(stub_server):
    ep = ChatEndpoint(stub_server, "stub", timeout=2.0, max_retries=0, mode="generate", chat_template=False)
    prompt = "Sentence A: a\nSentence B: b\nAnswer:"
    assert ep.prob_yes([prompt + " YES", prompt + " NO", prompt + " GARBAGE"]) == [1.0, 0.0, 0.0]
    assert _Stub.paths == ["/v1/completions"] * 3 and ep.unparseable == 1
    assert sorted(_Stub.calls) == sorted([prompt + " YES", prompt + " NO", prompt + " GARBAGE"])
    assert all(p["max_tokens"] == 10 and p["temperature"] == 0.0 and "logprobs" not in p for p in _Stub.payloads)
    # with the chat template: /chat/completions, the reply read the same way ("**No**": No)
    ep = ChatEndpoint(stub_server, "stub", timeout=2.0, max_retries=0, mode="generate")
    assert ep.prob_yes(["YES", "BOLD"]) == [1.0, 0.0] and _Stub.paths[-1] == "/v1/chat/completions"
