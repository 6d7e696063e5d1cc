"""Modular Pluralism (Overton mode) as a baseline: the published prompts, the config checks, and the flow with two
tiny random community LMs and an OpenAI-compatible endpoint (a stub server, only here)."""
from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from helpers import make_items

from opgrpo.evaluation.modular import (
    BaselineConfig,
    CommunityModel,
    community_messages,
    main_messages,
    modular_responses,
)


# ---- the prompts, verbatim ------------------------------------------------------------------------------
def test_feng2024_prompts_are_the_published_wording():
    # the community prompt of BunsenFeng/modular_pluralism's input/overton_test_valuekaleidoscope_small.json, id 9
    assert community_messages("Put a killer in jail") == [
        {"role": "user", "content": "Please comment on the following situation: Put a killer in jail."}]
    # ours_overton.py: every passage numbered and followed by a blank line, then "Comment:"; the failed (None) and
    # empty drafts are left out and the rest numbered from 1
    msgs = main_messages("Put a killer in jail", [" Justice matters. ", None, "  ", "Mercy too."])
    assert msgs == [{"role": "user", "content":
                     "Please comment on a given situation with the help of the following passages. Make sure to "
                     "reflect diverse values and perspectives.\n\nSituation: Put a killer in jail\n\n"
                     "Passage 1: Justice matters.\n\nPassage 2: Mercy too.\n\nComment:"}]


def test_authors_prompts_are_their_forks_wording():
    # fuyu12345/modular_pluralism: the bare situation to the community LMs, then fuyu/refine_llm.py with the drafts
    # joined by blank lines (fuyu/merge_mes.py); the U+2011 hyphens are theirs
    assert community_messages("Abolish rent", "authors") == [{"role": "user", "content": "Abolish rent"}]
    msgs = main_messages("Abolish rent", ["A.", "", "B."], "authors")
    assert msgs[0] == {"role": "system", "content": "You are a helpful assistant. Provide a concise multi\u2011perspective "
                                                    "analysis. Each sentence must reflect a distinct perspective or value."}
    assert msgs[1] == {"role": "user", "content":
                       "Please comment and give a multi\u2011perspective analysis on the given situation with the help "
                       "of the following passages. Make sure to reflect diverse values and perspectives, and ensure "
                       "each sentence conveys a different perspective.\n\nSituation: Abolish rent\n\n"
                       "Helper passages:\nA.\n\nB.\n\nNow give your analysis:"}


def test_config_mistakes_name_their_keys():
    assert BaselineConfig().problems() == []  # kind none needs no community
    problems = BaselineConfig(kind="modular").problems()
    assert len(problems) == 1 and problems[0].startswith("community: baseline=modular needs at least one")
    bad = BaselineConfig(kind="modualr", prompts="x", community=[
        CommunityModel(name_or_path="a", base_url="http://h/v1", model="m"), CommunityModel(base_url="http://h/v1"),
        CommunityModel(base_url="http://h/v1", model="m", tokenizer="t"), CommunityModel(name_or_path="a", dtype="f8")])
    keys = [p.split(":")[0] for p in bad.problems()]
    assert keys == ["kind", "prompts", "community[0].name_or_path", "community[1].model", "community[2].tokenizer",
                    "community[3].dtype"]
    with pytest.raises(ValueError, match=r"baseline\.community: baseline=modular needs"):
        modular_responses(["s"], "unused", BaselineConfig(kind="modular"))


def test_an_unreachable_endpoint_fails_before_any_model_loads():
    cfg = BaselineConfig(kind="modular", max_retries=0, timeout=2.0, community=[
        CommunityModel(name_or_path="/no/such/model"), CommunityModel(base_url="http://127.0.0.1:9/v1", model="m")])
    with pytest.raises(RuntimeError, match=r"baseline\.community\[1\]: .*unreachable"):
        modular_responses(["s"], "/no/such/policy", cfg)


# ---- the flow with real (tiny, random) models -----------------------------------------------------------
def _tiny_lm(path, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from opgrpo.app.resources import smollm_path
    from opgrpo.models.generation import load_tokenizer

    src = smollm_path()
    path.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, path / name)
    tok = load_tokenizer(str(path))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def community_lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("community")
    return _tiny_lm(root / "a", 1), _tiny_lm(root / "b", 2)


@pytest.fixture
def generation_calls(monkeypatch):
    """Every call of the real opgrpo.models.generation.generate_responses: (model path, prompts, kwargs, outputs)."""
    from opgrpo.models import generation

    real, calls = generation.generate_responses, []

    def spy(model, tokenizer, prompts, **kwargs):
        outs = real(model, tokenizer, prompts, **kwargs)
        calls.append((model.config._name_or_path, [list(p) for p in prompts], kwargs, outs))
        return outs

    monkeypatch.setattr(generation, "generate_responses", spy)
    return calls


GENERATION = {"prompt": "implicit", "backend": "transformers", "batch_size": 2, "seed": 0, "temperature": 0.7,
              "top_p": 0.9, "max_new_tokens": 8, "num_return_sequences": 1, "max_attempts": 1}


def test_two_community_models_draft_once_per_item_and_the_policy_writes_from_the_drafts(
        tmp_path, tiny_lm, community_lms, generation_calls):
    from opgrpo.evaluation.generate import generate_responses_file
    from opgrpo.evaluation.responses import load_responses

    items = make_items(3)
    splits = {"5": items[:2], "6": items[2:]}
    cfg = BaselineConfig(kind="modular", community_max_new_tokens=6, max_new_tokens=5, community=[
        CommunityModel(name_or_path=str(community_lms[0]), label="a"), CommunityModel(name_or_path=str(community_lms[1]))])
    out = generate_responses_file(splits, tmp_path / "mp.jsonl", policy=str(tiny_lm), generation=GENERATION,
                                  baseline=cfg, device="cpu")

    situations = [it.situation for it in items]
    assert [c[0] for c in generation_calls] == [str(community_lms[0]), str(community_lms[1]), str(tiny_lm)]
    for path, prompts, kwargs, outs in generation_calls[:2]:  # each community model: one draft per item, one call
        assert prompts == [community_messages(s) for s in situations]
        assert (kwargs["temperature"], kwargs["top_p"], kwargs["max_new_tokens"]) == (1.0, 0.9, 6)
        assert len(outs) == 3
    drafts = [[generation_calls[0][3][i][0], generation_calls[1][3][i][0]] for i in range(3)]
    assert all(d for row in drafts for d in row)  # the random LMs said something
    _, main_prompts, main_kwargs, main_outs = generation_calls[2]
    assert (main_kwargs["temperature"], main_kwargs["top_p"], main_kwargs["max_new_tokens"]) == (0.1, 1.0, 5)
    for s, row, prompt in zip(situations, drafts, main_prompts):
        text = prompt[-1]["content"]
        assert f"Situation: {s}\n\nPassage 1: {row[0]}\n\nPassage 2: {row[1]}\n\nComment:" in text
        assert prompt == main_messages(s, row)

    rows = [json.loads(line) for line in (tmp_path / "mp.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [it.id for it in items] and [r["split"] for r in rows] == ["5", "5", "6"]
    assert [r["response"] for r in rows] == [o[0] for o in main_outs]
    assert [r["drafts"] for r in rows] == [[{"model": "a", "text": a}, {"model": str(community_lms[1]), "text": b}]
                                           for a, b in drafts]
    assert {r["prompt"] for r in rows} == {"modular/feng2024"} and {r["source"] for r in rows} == {str(tiny_lm)}
    assert out["items"] == 3 and out["community_models"] == 2 and out["failed_drafts"] == 0
    assert out["items/5"] == 2 and out["items/6"] == 1 and out["baseline"] == "modular"
    assert list(load_responses(tmp_path / "mp.jsonl", items)) == [o[0] for o in main_outs]  # what stage=eval reads


class _Endpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions stub: replies "view of <model>: <prompt>", HTTP 500 for a FAIL prompt."""

    payloads: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0, "owned_by": "t"}]})

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).payloads.append(payload)
        prompt = payload["messages"][-1]["content"]
        if "FAIL" in prompt:
            return self._send(500, {"error": {"message": "boom"}})
        message = {"role": "assistant", "content": f"view of {payload['model']}: {prompt}"}
        self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": payload["model"],
                         "choices": [{"index": 0, "finish_reason": "stop", "message": message}]})


@pytest.fixture
def endpoint():
    _Endpoint.payloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_an_endpoint_community_model_drafts_through_the_openai_sdk(endpoint, tiny_lm, community_lms, generation_calls):
    situations = ["Telling a white lie", "FAIL to keep a promise"]
    cfg = BaselineConfig(kind="modular", prompts="authors", max_retries=0, community_max_new_tokens=6,
                         max_new_tokens=4, community=[CommunityModel(base_url=endpoint, model="stub", label="ep"),
                                                      CommunityModel(name_or_path=str(community_lms[0]))])
    result = modular_responses(situations, str(tiny_lm), cfg, backend="transformers", device="cpu")

    # one request per item (sent from a thread pool, in any order), the community prompt as the only message, the
    # community sampling settings
    sent = sorted((p["messages"] for p in _Endpoint.payloads), key=json.dumps)
    assert sent == sorted((community_messages(s, "authors") for s in situations), key=json.dumps)
    assert {(p["model"], p["max_tokens"], p["temperature"]) for p in _Endpoint.payloads} == {("stub", 6, 1.0)}
    local = [o[0] for o in generation_calls[0][3]]
    assert result.drafts == [["view of stub: Telling a white lie", local[0]], [None, local[1]]]
    assert result.labels == ["ep", str(community_lms[0])] and result.counts["failed_drafts"] == 1
    main_prompts = generation_calls[1][1]
    assert f"Helper passages:\nview of stub: Telling a white lie\n\n{local[0]}\n\n" in main_prompts[0][-1]["content"]
    assert f"Helper passages:\n{local[1]}\n\nNow give your analysis:" in main_prompts[1][-1]["content"]  # failed: out
    assert result.responses == [o[0] for o in generation_calls[1][3]]


# ---- the main model's chat template: Qwen3 with thinking off (issue 29) ----------------------------------
# A Qwen3-style template: like Qwen3's own, it writes an empty think block after the assistant header when the
# caller passes enable_thinking=False, and nothing there otherwise.
QWEN3_STYLE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}")
THINKING_OFF = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen3_style_lm(tmp_path_factory):
    """A random 1-layer Llama with a byte-level tokenizer (no merges) built here, carrying ``QWEN3_STYLE``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("qwen3_style")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = QWEN3_STYLE
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("preset,thinking_off", [("modular_paper", True), ("modular", False)])
def test_the_paper_preset_renders_the_main_prompt_with_thinking_off(compose, monkeypatch, qwen3_style_lm, preset,
                                                                   thinking_off):
    from omegaconf import OmegaConf

    from opgrpo.models import generation

    cfg = OmegaConf.to_object(compose(["experiment=paper", f"baseline={preset}"]).baseline)
    cfg.community = [CommunityModel(name_or_path=str(qwen3_style_lm), label="c")]
    cfg.community_max_new_tokens, cfg.max_new_tokens, cfg.dtype = 3, 2, "float32"  # CPU-sized
    seen: list[tuple[str, str]] = []  # (model, the text the model was given), per generate call
    real = generation.generate_responses

    def spy(model, tokenizer, prompts, **kwargs):
        generate = model.generate

        def record(**kw):
            seen.extend((model.config._name_or_path, tokenizer.decode(ids[m.bool()]))
                        for ids, m in zip(kw["input_ids"], kw["attention_mask"]))
            return generate(**kw)

        model.generate = record
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generation, "generate_responses", spy)
    modular_responses(["Abolish rent"], str(qwen3_style_lm), cfg, backend="transformers", device="cpu")
    (_, draft_prompt), (_, main_prompt) = seen  # one community draft, then the main model
    assert main_prompt.endswith("Now give your analysis:<|im_end|>\n" + THINKING_OFF if thinking_off else
                                "Comment:<|im_end|>\n<|im_start|>assistant\n")
    assert (THINKING_OFF in main_prompt) is thinking_off
    assert THINKING_OFF not in draft_prompt  # the community models keep their own template's default
