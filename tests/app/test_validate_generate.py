"""stage=generate and its baseline (``baseline=modular``) are validated at start-up, like the training and evaluation
stages: the generating policy, the test data, the community models of Modular Pluralism (local directories or hub
ids; endpoints by the form of their URL) and the ``generate``/``baseline`` sections' own problems, each naming its
key, before any model loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opgrpo.app.validate import ConfigError, check

BIN = Path(sys.executable).parent / "opgrpo"
GENERATE = ["experiment=cpu_demo", "stage=generate"]


def _problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        check(cfg)
    return str(err.value)


def _community(*specs: str) -> str:
    return "baseline.community=[" + ",".join("{" + s + "}" for s in specs) + "]"


@pytest.fixture
def model_dir(tmp_path):
    """A directory holding a model and its tokenizer as validation sees one (a config, weights, tokenizer files):
    nothing is loaded at start-up, so nothing heavier is needed."""
    path = tmp_path / "model"
    path.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (path / name).write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_a_missing_policy_fails_through_the_cli_before_any_model_loads(tmp_path):
    """The run stops at start-up (exit status 2, status.json failed naming the key), not after the stage started
    loading the policy (a traceback from transformers, exit status 1, a generate/ folder)."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(BIN), *GENERATE, "model.name_or_path=/no/such/policy", f"hydra.run.dir={run}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 2, res.stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed"
    assert "model.name_or_path: no such model directory '/no/such/policy'" in status["error"]
    assert not (run / "generate").exists()


def test_the_generating_policy_is_checked(compose, model_dir):
    message = _problems(compose([*GENERATE, "model.name_or_path=/no/such/policy"]))
    assert "  model.name_or_path: no such model directory '/no/such/policy'" in message
    # offline, a hub id must be in the cache
    message = _problems(compose([*GENERATE, "model.name_or_path=Qwen/not-in-any-cache"]))
    assert "  model.name_or_path: 'Qwen/not-in-any-cache' is neither a local directory nor in the hub cache" in message
    # another policy answers (eval.model_path): the default one is not loaded, so not asked for ...
    check(compose([*GENERATE, "model.name_or_path=Qwen/not-in-any-cache", f"eval.model_path={model_dir}"]))
    # ... and that policy is checked instead
    message = _problems(compose([*GENERATE, f"model.name_or_path={model_dir}", "eval.model_path=/no/such/main"]))
    assert "  eval.model_path: no such model directory '/no/such/main'" in message


def test_the_test_data_is_checked_and_missing_values_are_listed(compose, tmp_path):
    message = _problems(compose([*GENERATE, f"benchmark.test_file={tmp_path / 'no_such_test.csv'}"]))
    assert f"  benchmark.test_file: no such file '{tmp_path / 'no_such_test.csv'}'" in message
    message = _problems(compose(["experiment=paper", "stage=generate", "deepspeed=none"]))
    assert "  benchmark.test_file: required by stage(s) generate (or benchmark.test_files)" in message
    assert "benchmark.train_file" not in message  # generation reads no training data
    message = _problems(compose([*GENERATE, "model=local"]))
    assert "  model.name_or_path: missing value" in message
    # a missing value of the stage's own sections is listed when the stage reads them, not for the other stages
    missing = ["generate.out_file=???", "baseline.timeout=???"]
    message = _problems(compose([*GENERATE, *missing]))
    assert "  generate.out_file: missing value" in message and "  baseline.timeout: missing value" in message
    message = _problems(compose(["experiment=cpu_demo", "stage=eval", *missing, "eval.nli.model=/no/such/nli"]))
    assert "eval.nli.model" in message and "generate" not in message and "baseline" not in message


def test_a_bad_community_model_names_its_baseline_key_and_good_ones_pass(compose, model_dir, tmp_path,
                                                                          monkeypatch):
    good = f"name_or_path: '{model_dir}', label: one"
    cfg = compose([*GENERATE, "baseline=modular", f"model.name_or_path={model_dir}",
                   _community(good, "name_or_path: /no/such/community", f"name_or_path: '{tmp_path}'",
                              f"name_or_path: '{model_dir}', tokenizer: /no/such/tokenizer",
                              "base_url: 'localhost:8000/v1', model: m", "base_url: 'http://h:80x/v1', model: m")])
    message = _problems(cfg)
    assert "  baseline.community[1].name_or_path: no such model directory '/no/such/community'" in message
    assert f"  baseline.community[2].name_or_path: '{tmp_path}' holds no model" in message
    assert "  baseline.community[3].tokenizer: no such tokenizer directory '/no/such/tokenizer'" in message
    assert "  baseline.community[4].base_url: expected an http(s) URL" in message
    assert "  baseline.community[5].base_url: not a valid URL 'http://h:80x/v1'" in message
    assert "baseline.community[0]" not in message
    # a valid tiny config passes: a local community model with its tokenizer, and an endpoint (its URL is not
    # contacted at start-up), the responses into a folder still to be made
    check(compose([*GENERATE, "baseline=modular", f"model.name_or_path={model_dir}",
                      _community(good + f", tokenizer: '{model_dir}'", "base_url: 'http://127.0.0.1:9/v1', model: m"),
                      f"generate.out_file={tmp_path / 'out' / 'responses.jsonl'}"]))
    # the preset's hub ids (LoRA adapters on Mistral-7B), offline and not cached
    message = _problems(compose([*GENERATE, "baseline=modular", f"model.name_or_path={model_dir}"]))
    assert ("  baseline.community[0].name_or_path: 'bunsenfeng/mistral-news_c' is neither a local directory nor in "
            "the hub cache") in message
    assert "  baseline.community[0].tokenizer: 'mistralai/Mistral-7B-Instruct-v0.1' is neither" in message
    # once in the cache they pass: an adapter repository holds adapter_config.json (no config.json), the tokenizer's
    # only its tokenizer files
    cache = tmp_path / "hub"
    for repo, files in [(f"bunsenfeng/mistral-{s}", ["adapter_config.json"])
                        for s in ("news_c", "news_l", "news_r", "reddit_c", "reddit_l", "reddit_r")] + [
                       ("mistralai/Mistral-7B-Instruct-v0.1", ["tokenizer_config.json", "tokenizer.model"])]:
        folder = cache / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text("0" * 40)
        (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
        for name in files:
            (folder / "snapshots" / ("0" * 40) / name).write_text("{}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    check(compose([*GENERATE, "baseline=modular", f"model.name_or_path={model_dir}"]))


def test_the_sections_own_problems_are_gathered_under_their_keys(compose, model_dir, tmp_path):
    message = _problems(compose([*GENERATE, f"model.name_or_path={model_dir}", "baseline.top_p=2",
                                 "baseline.community_max_new_tokens=0", "generate.out_file=responses.csv",
                                 _community("base_url: 'http://127.0.0.1:9/v1'")]))
    for line in ("baseline.top_p: must be in [0, 1] (got 2", "baseline.community_max_new_tokens: must be positive",
                 "baseline.community[0].model: the endpoint http://127.0.0.1:9/v1 needs the served model name",
                 "generate.out_file: must end in .jsonl or .ndjson"):
        assert f"  {line}" in message, line
    message = _problems(compose([*GENERATE, f"model.name_or_path={model_dir}", "baseline=modular",
                                 "baseline.community=[]"]))
    assert "  baseline.community: baseline=modular needs at least one community model" in message
    # an output file that cannot be written fails now, not after every response was generated
    (tmp_path / "a_file").write_text("")
    for out, why in ((tmp_path, "is a directory"), (tmp_path / "a_file" / "responses.jsonl", "is a file, not a")):
        message = _problems(compose([*GENERATE, f"model.name_or_path={model_dir}", f"generate.out_file={out}"]))
        assert "  generate.out_file: " in message and why in message, out
    # stages that do not generate do not read these sections
    check(compose(["experiment=cpu_demo", "stage=describe", "baseline.top_p=2", "generate.out_file=responses.csv"]))
