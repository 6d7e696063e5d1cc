"""Judges: a tiny random Llama through YesNoLM, ChatEndpoint against a local stub server, and the one
builder (opgrpo.judges.build_judge) for every kind and purpose."""
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import torch

from opgrpo.judges import (
    ChatEndpoint,
    JudgeUnavailable,
    LabelJudge,
    LocalChatJudge,
    PairQuery,
    YesNoLM,
    build_judge,
    parse_yes_no,
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


# --- HTTP stub -------------------------------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    calls: ClassVar[list] = []
    auth: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def do_GET(self):
        if self.path.endswith("/models"):
            self._send(200, {"data": [{"id": "stub"}]})
        else:
            self._send(404, {})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(n))
        prompt = payload["messages"][-1]["content"]
        type(self).calls.append(prompt)
        type(self).auth.append(self.headers.get("Authorization"))
        if "FAIL" in prompt:
            return self._send(500, {"error": "boom"})
        if "SLOW" in prompt:
            time.sleep(1.0)
        reply = {"YES": "Yes, same perspective.", "NO": "No.", "GARBAGE": "Perhaps, hard to say."}
        key = next((k for k in reply if k in prompt), "GARBAGE")
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply[key]}}]})


@pytest.fixture()
def stub_server():
    _Stub.calls, _Stub.auth = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


SECRET = "sk-test-secret-4711"


def test_chat_endpoint_yes_no_garbage_error_timeout(stub_server, monkeypatch, caplog):
    monkeypatch.setenv("OPGRPO_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    ep = ChatEndpoint(stub_server, "stub", api_key_env="OPGRPO_TEST_KEY", timeout=0.3, max_retries=2,
                      max_workers=4, retry_backoff=0.0)
    ep.check()
    probs = ep.prob_yes(["YES please", "NO please", "GARBAGE please", "FAIL please", "SLOW please"])
    assert probs == [1.0, 0.0, None, None, None]
    assert ep.errors == 2  # FAIL and SLOW, after retries
    assert ep.unparseable == 1  # GARBAGE
    assert _Stub.calls.count("FAIL please") == 3  # 1 try + 2 retries
    assert _Stub.calls.count("SLOW please") == 3
    assert set(_Stub.auth) == {f"Bearer {SECRET}"}
    assert SECRET not in caplog.text
    assert "failed after 3 attempt" in caplog.text
    assert ep.complete([]) == []


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
    ep = ChatEndpoint(stub_server, "stub", timeout=2.0, max_retries=0, retry_backoff=0.0)
    assert ep.prob_yes(["YES \ud800 please\x1b"]) == [1.0]
    assert _Stub.calls == ["YES \ufffd please "] and ep.cleaned == 1
