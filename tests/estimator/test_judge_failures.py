"""Issue 26, items 9 and 1: a judge that fails fails the estimator stage with its own error; a base model saved for
want of triplets is not "tuned"; an HTTP judge's model is probed at start-up; a mining cache of other data is not
resumed. The judge is a real local OpenAI-compatible server (http.server in a thread), talked to by the real SDK."""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from typing import ClassVar

import pytest
from helpers import JsonHandler

from opgrpo.benchmark import load_items, sample_data_path
from opgrpo.estimator import (
    EstimatorConfig,
    JudgeConfig,
    MiningConfig,
    MiningFailed,
    mine_triplets,
)
from opgrpo.estimator.identity import (
    TRAINED_MARKER,
    estimator_identity,
    fingerprint,
    label,
    training_record,
    write_training_record,
)
from opgrpo.estimator.stage import check_mining, run_estimator_stage
from opgrpo.judges import ChatEndpoint, probe_endpoint

OOM = "CUDA out of memory in the judge"


class _Endpoint(JsonHandler):
    """/v1/models lists ``served``; /v1/completions and /v1/chat/completions answer ``answer``, 404 (vLLM's words) for
    a model not served, 500 for a prompt holding ``fail_on`` ("*": every prompt), 401 without ``key``."""

    served: ClassVar[set] = {"stub"}
    fail_on: ClassVar[str] = ""
    answer: ClassVar[str] = "Yes"
    key: ClassVar[str] = ""
    delay: ClassVar[float] = 0.0
    posts: ClassVar[list] = []


    def do_GET(self):
        if self.path.endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                                "owned_by": "test"} for m in sorted(self.served)]})
        self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        cls = type(self)
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        chat = self.path.endswith("/chat/completions")
        prompt = payload["messages"][-1]["content"] if chat else payload["prompt"]
        cls.posts.append((self.path, payload))
        if cls.delay:
            time.sleep(cls.delay)
        if cls.key and self.headers.get("Authorization") != f"Bearer {cls.key}":
            return self._send(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
        if payload["model"] not in cls.served:
            return self._send(404, {"error": {"message": f"The model `{payload['model']}` does not exist.",
                                              "type": "NotFoundError", "code": 404}})
        if cls.fail_on and (cls.fail_on == "*" or cls.fail_on in prompt):
            return self._send(500, {"error": {"message": OOM}}, [("Retry-After-Ms", "1")])
        if chat:
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": cls.answer}}
            return self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": payload["model"],
                                    "choices": [choice]})
        self._send(200, {"id": "c", "object": "text_completion", "created": 0, "model": payload["model"],
                         "choices": [{"index": 0, "finish_reason": "stop", "text": " " + cls.answer,
                                      "logprobs": None}]})


@pytest.fixture()
def endpoint():
    _Endpoint.served, _Endpoint.fail_on, _Endpoint.answer, _Endpoint.key = {"stub"}, "", "Yes", ""
    _Endpoint.delay, _Endpoint.posts = 0.0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the start-up probe ------------------------------------------------------------------------------------------
def test_probe_passes_a_served_model_with_one_short_request_where_the_judge_sends_its_own(endpoint):
    assert probe_endpoint(endpoint, "stub") is None
    assert probe_endpoint(endpoint, "stub", chat_template=False) is None
    assert [path for path, _ in _Endpoint.posts] == ["/v1/chat/completions", "/v1/completions"]
    assert all(p["max_tokens"] == 1 and p["model"] == "stub" for _, p in _Endpoint.posts)


def test_probe_names_the_setting_to_fix_in_the_endpoints_words(endpoint, monkeypatch):
    setting, message = probe_endpoint(endpoint, "qwen-tpyo", chat_template=False)
    assert setting == "model"
    assert "does not serve model 'qwen-tpyo': HTTP 404: The model `qwen-tpyo` does not exist." in message
    assert "(it serves: stub)" in message
    _Endpoint.fail_on = "*"
    assert probe_endpoint(endpoint, "stub") == ("base_url", f"judge endpoint {endpoint} is failing: HTTP 500: {OOM}")
    _Endpoint.fail_on, _Endpoint.key = "", "sk-the-right-one"
    monkeypatch.setenv("OPGRPO_TEST_KEY", "sk-a-wrong-key-4711")
    setting, message = probe_endpoint(endpoint, "stub", api_key_env="OPGRPO_TEST_KEY")
    assert setting == "api_key_env" and "HTTP 401: Incorrect API key provided" in message
    assert "$OPGRPO_TEST_KEY" in message and "4711" not in message
    _Endpoint.key, _Endpoint.delay = "", 2.0
    assert probe_endpoint(endpoint, "stub", timeout=0.3) == (
        "base_url", f"judge endpoint {endpoint} did not answer within 0.3 s")
    port = _free_port()
    setting, message = probe_endpoint(f"http://user:pw4711@127.0.0.1:{port}/v1", "stub")
    assert setting == "base_url" and f"judge endpoint http://***@127.0.0.1:{port}/v1 is unreachable: " in message
    assert "pw4711" not in message


def test_a_failed_request_keeps_the_servers_words(endpoint):
    _Endpoint.fail_on = "Sentence A"
    judge = ChatEndpoint(endpoint, "stub", max_retries=0, mode="generate", chat_template=False)
    judge.prob_yes(["Sentence A: x", "fine"])
    assert judge.errors == 1 and judge.failures == Counter({f"HTTP 500: {OOM}": 1})


def _checked(compose, overrides, run_dir):
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.validate import check

    return check(compose(["experiment=cpu_demo", *overrides]), None if run_dir is None else RunDir(run_dir))


def test_the_start_up_check_probes_only_a_run_that_mines_with_an_http_judge(compose, endpoint, tmp_path):
    from opgrpo.app.validate import ConfigError

    judge = ["estimator.judge.kind=http", f"estimator.judge.base_url={endpoint}", "estimator.judge.model=qwen-tpyo"]
    with pytest.raises(ConfigError, match=r"estimator.judge.model: judge endpoint .* HTTP 404: The model `qwen-tpyo`"):
        _checked(compose, ["stage=estimator", *judge], tmp_path / "run")
    assert len(_Endpoint.posts) == 1
    # not asked: a multirun's pre-check (it may run where the endpoint is out of reach), a run without the estimator
    # stage, a run that turned the probe off
    _checked(compose, ["stage=estimator", *judge], None)
    _checked(compose, ["stage=eval_base", *judge], tmp_path / "run")
    _checked(compose, ["stage=estimator", *judge, "estimator.judge.probe=false"], tmp_path / "run")
    assert len(_Endpoint.posts) == 1
    # what an HTTP judge needs is named without a request
    with pytest.raises(ConfigError) as err:
        _checked(compose, ["stage=estimator", "estimator.judge.kind=http", "estimator.judge.base_url=ftp://host/v1"],
                 tmp_path / "run")
    assert "estimator.judge.model: required for judge kind 'http'" in str(err.value)
    assert "estimator.judge.base_url: expected an http(s) URL" in str(err.value) and len(_Endpoint.posts) == 1


# --- failing mining fails the stage ------------------------------------------------------------------------------
def _http_cfg(minilm_path, url, model="stub", **judge) -> EstimatorConfig:
    return EstimatorConfig(base_model=str(minilm_path), min_triplets=10 ** 6,  # no training: mining is the point
                           mining=MiningConfig(pair_threshold=0.3, max_pairs_judged=100, max_negatives_judged=100),
                           judge=JudgeConfig(kind="http", base_url=url, model=model, max_retries=0, **judge))


@pytest.mark.parametrize("model,error", [("stub", f"HTTP 500: {OOM}"),
                                         ("qwen-tpyo", "HTTP 404: The model `qwen-tpyo` does not exist.")])
def test_a_judge_failing_every_call_fails_the_stage_with_its_error(minilm_path, endpoint, tmp_path, model, error):
    _Endpoint.fail_on = "Sentence A"  # every mining prompt; /models answers, so the judge passes its check
    items, _ = load_items(sample_data_path("train"))
    with pytest.raises(MiningFailed) as err:
        run_estimator_stage(items[:4], _http_cfg(minilm_path, endpoint, model), tmp_path, device="cpu")
    message = str(err.value)
    assert f"the judge at {endpoint} failed on " in message and "(100%, more than " in message
    assert "estimator.judge.max_failure_share=0.25" in message and f"judge error: {error} (" in message
    assert not (tmp_path / "estimator" / "model").exists()  # no "estimator" saved
    assert not (tmp_path / "estimator" / "metrics.json").exists()


def test_a_judge_that_never_says_same_fails_the_stage_also_when_run_again(minilm_path, endpoint, tmp_path):
    _Endpoint.answer = "No"  # answers every prompt; confirms no pair
    items, _ = load_items(sample_data_path("train"))
    cfg = _http_cfg(minilm_path, endpoint, mode="generate", chat_template=False)
    for resumed in (0, 4):  # the second run resumes the first one's records and asks nothing
        with pytest.raises(MiningFailed, match=rf"0 triplets from 4 items, 4 of them with candidate pairs "
                                               rf"\({resumed} resumed.*the judge confirmed no pair"):
            run_estimator_stage(items[:4], cfg, tmp_path, device="cpu")
    assert not (tmp_path / "estimator" / "model").exists()


def test_the_share_and_zero_triplet_rules():
    judge = object()
    stats = {"items": 10, "triplets": 4, "candidate_pairs": 30, "judge_prompts": 10, "judge_unanswered": 2}
    check_mining(stats, Counter({"HTTP 500: boom": 2}), judge, 0.25)  # 20%: a healthy run's noise
    with pytest.raises(MiningFailed, match=r"failed on 3 of 10 prompts \(30%, more than estimator.judge.max_failure_"
                                           r"share=0.25\); judge error: HTTP 500: boom \(2x\); HTTP 404: gone \(1x\)"):
        check_mining(stats, Counter({"HTTP 500: boom": 2, "HTTP 404: gone": 1}), judge, 0.25)
    check_mining(stats, Counter({"HTTP 500: boom": 10}), judge, 1.0)  # 1 = never for the share alone
    zero = {**stats, "triplets": 0, "skip_too_few_perspectives": 1, "skip_no_pair_above_threshold": 2}
    with pytest.raises(MiningFailed, match=r"0 triplets from 10 items, 7 of them with candidate pairs .*judge error: "
                                           r"HTTP 500"):
        check_mining(zero, Counter({"HTTP 500: boom": 10}), judge, 1.0)
    with pytest.raises(MiningFailed, match="the judge confirmed no pair"):  # answered, but never "same"
        check_mining(zero, Counter(), judge, 0.25)
    # resumed items count: a second run of the same command, which asks the judge nothing, fails again
    resumed = {**zero, "resumed": 10, "judge_prompts": 0, "candidate_pairs": 0, "skip_no_confirmed_pair": 7}
    with pytest.raises(MiningFailed, match="7 of them with candidate pairs .10 resumed; 0 judge prompts"):
        check_mining(resumed, Counter(), judge, 0.25)
    check_mining({**zero, "skip_no_pair_above_threshold": 9}, Counter(), judge, 0.25)  # nothing to ask the judge
    check_mining(zero, Counter({"x": 10}), None, 0.25)  # kind none: the thresholds alone decided
    keys = [p.split(":")[0] for p in JudgeConfig(max_failure_share=1.5).problems()]
    assert keys == ["max_failure_share"] and JudgeConfig(max_failure_share=1.0).problems() == []


class _RaisingJudge:
    def prob_yes(self, prompts):
        raise RuntimeError("the judge's GPU fell off the bus")


def test_a_judge_that_raises_has_its_prompts_counted_as_failures(minilm):
    items, _ = load_items(sample_data_path("train"))
    failures: Counter = Counter()
    triplets, stats = mine_triplets(items[:3], minilm, _RaisingJudge(), MiningConfig(pair_threshold=0.3),
                                    failures=failures)
    assert triplets == [] and stats["judge_prompts"] > 0
    assert failures == Counter({"RuntimeError: the judge's GPU fell off the bus": stats["judge_prompts"]})
    with pytest.raises(MiningFailed, match="GPU fell off the bus"):
        check_mining(stats, failures, _RaisingJudge(), 0.25)


# --- tuned only when trained -------------------------------------------------------------------------------------
def test_a_base_copy_saved_for_want_of_triplets_is_not_tuned(minilm_path, tmp_path):
    items, _ = load_items(sample_data_path("train"))
    res, _ = run_estimator_stage(items[:3], EstimatorConfig(base_model=str(minilm_path)), tmp_path, device="cpu")
    model = tmp_path / "estimator" / "model"
    assert not res["trained"] and res["mining"]["triplets"] < 2  # too few to train on: the base model saved
    assert training_record(model) == {"trained": False, "base_model": str(minilm_path),
                                      "triplets": res["mining"]["triplets"]}
    identity = estimator_identity(model, minilm_path)
    assert identity["tuned"] is False and label(identity).endswith("(untuned estimator)")
    # the record is not part of the model: its fingerprint is the same without it
    fp = identity["fingerprint"]
    (model / TRAINED_MARKER).unlink()
    assert fingerprint(model) == fp
    # a folder without the record keeps the old rule (differs from the base: tuned); the record decides when there
    assert estimator_identity(model, minilm_path)["tuned"] is True
    write_training_record(model, trained=True, base_model=minilm_path, triplets=40)
    assert estimator_identity(model, minilm_path)["tuned"] is True
    copy = tmp_path / "copy"
    shutil.copytree(minilm_path, copy)
    write_training_record(copy, trained=True, base_model=minilm_path, triplets=40)
    assert estimator_identity(copy, minilm_path)["tuned"] is False  # the same bytes as its base are never tuned


# --- a mining cache of other data is not resumed -----------------------------------------------------------------
def _write_train_csv(path, rows):
    """The training CSV without an id column (items get ``<stem>:<row>`` ids), as the issue's repro."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "answer", "num_perspectives"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in writer.fieldnames})


def test_a_replaced_training_file_mines_afresh_saying_the_data_changed(minilm_path, tmp_path, caplog):
    with open(sample_data_path("train"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    data = tmp_path / "train.csv"
    cfg = EstimatorConfig(base_model=str(minilm_path), min_triplets=10 ** 6, mining=MiningConfig(pair_threshold=0.3))
    _write_train_csv(data, rows[:10])
    first, _ = load_items(data)
    assert run_estimator_stage(first, cfg, tmp_path / "run", device="cpu")[0]["mining"]["resumed"] == 0
    _write_train_csv(data, rows[10:20])  # ten other situations, the same ids
    other, _ = load_items(data)
    assert [i.id for i in other] == [i.id for i in first] and other[0].situation != first[0].situation
    caplog.clear()
    res, models = run_estimator_stage(other, cfg, tmp_path / "run", device="cpu")
    assert res["mining"]["resumed"] == 0 and res["mining"]["items"] == 10
    assert "mining again from scratch" in caplog.text and "data changed" in caplog.text
    mined = [json.loads(line) for line in (tmp_path / "run" / "estimator" / "triplets.jsonl").open()]
    texts = {p.text for it in other for p in it.perspectives}
    assert mined and all(r["raw_anchor"] in texts for r in mined if r["status"] == "ok")
    # the same data again: resumed, as before
    assert run_estimator_stage(other, cfg, tmp_path / "run", device="cpu")[0]["mining"]["resumed"] == 10


# --- through the entrypoint --------------------------------------------------------------------------------------
def _opgrpo(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "opgrpo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def _judge_args(url: str, model: str, run) -> list[str]:
    return ["experiment=cpu_demo", "stage=estimator", "estimator.judge.kind=http", f"estimator.judge.base_url={url}",
            f"estimator.judge.model={model}", "estimator.judge.max_retries=0", f"hydra.run.dir={run}"]


def test_cli_an_unknown_judge_model_fails_at_start_up_naming_the_key(endpoint, tmp_path):
    run = tmp_path / "run"
    res = _opgrpo(_judge_args(endpoint, "qwen-tpyo", run), tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "estimator.judge.model: judge endpoint" in out and "The model `qwen-tpyo` does not exist." in out
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "estimator.judge.model" in status["error"]
    assert [p["model"] for _, p in _Endpoint.posts] == ["qwen-tpyo"]  # one short request, nothing mined
    assert not (run / "estimator").exists()


def test_cli_a_judge_failing_during_mining_fails_the_stage(endpoint, tmp_path):
    _Endpoint.fail_on = "Sentence A"  # the probe is answered, every mining prompt gets HTTP 500
    run = tmp_path / "run"
    res = _opgrpo(_judge_args(endpoint, "stub", run), tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and f"judge error: HTTP 500: {OOM}" in status["error"]
    assert "MiningFailed" in out and not (run / "estimator" / "model").exists()


def test_cli_an_unreachable_judge_fails_at_start_up_naming_base_url_without_its_password(tmp_path):
    run, port = tmp_path / "run", _free_port()
    res = _opgrpo(_judge_args(f"http://user:pw4711@127.0.0.1:{port}/v1", "stub", run), tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert f"estimator.judge.base_url: judge endpoint http://***@127.0.0.1:{port}/v1 is unreachable" in out
    assert "pw4711" not in out and not [p for p in run.rglob("*") if p.is_file() and b"pw4711" in p.read_bytes()]
