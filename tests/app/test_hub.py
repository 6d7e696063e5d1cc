"""Issue 18.3: ``hub.push=true hub.model_id=ORG/NAME`` pushes the run's last ``final/`` through the real
``huggingface_hub.HfApi`` code path; only ``create_repo`` / ``create_branch`` / ``upload_folder`` (the network calls)
are replaced here. A push that cannot work (no model id, no token, offline, nothing trained) fails at start-up."""
from __future__ import annotations

import json

import pytest

from opgrpo.app.runconfig import to_config
from opgrpo.app.validate import check


class FakeHubApi:
    """Records the HfApi calls that would reach the network."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi, constants

        self.calls: list[tuple[str, tuple, dict]] = []
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' environment is offline
        monkeypatch.setenv("OPGRPO_TEST_HUB_TOKEN", "hf_test_token")
        for name in ("create_repo", "create_branch", "upload_folder"):
            monkeypatch.setattr(HfApi, name, self._record(name))

    def _record(self, name):
        from types import SimpleNamespace

        def call(api, *args, **kwargs):
            self.calls.append((name, args, {**kwargs, "token": api.token}))
            if name == "upload_folder":
                return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc")
            return f"https://huggingface.co/{args[0]}" if name == "create_repo" else None

        return call


def _model_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def test_push_folder_creates_the_repo_and_uploads_the_folder(tmp_path, monkeypatch):
    from opgrpo.models.hub import HubSettings, push_folder

    fake = FakeHubApi(monkeypatch)
    final = _model_folder(tmp_path / "grpo" / "final")
    settings = HubSettings(push=True, model_id="org/op-grpo", token_env="OPGRPO_TEST_HUB_TOKEN", revision="sweep-1")
    url = push_folder(final, settings, run_dir="/runs/7")
    assert url == "https://huggingface.co/org/op-grpo/commit/abc"
    assert [name for name, _, _ in fake.calls] == ["create_repo", "create_branch", "upload_folder"]
    _, args, kwargs = fake.calls[0]
    assert args == ("org/op-grpo",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert kwargs["token"] == "hf_test_token"
    upload = fake.calls[2][2]
    assert upload["repo_id"] == "org/op-grpo" and upload["folder_path"] == str(final)
    assert upload["revision"] == "sweep-1" and "training_args.bin" in upload["ignore_patterns"]
    assert upload["commit_message"] == "opgrpo: grpo model from /runs/7"


def test_push_folder_refuses_a_folder_without_a_model(tmp_path, monkeypatch):
    from opgrpo.models.hub import HubSettings, push_folder
    from opgrpo.utils.checks import ConfigProblemsError

    fake = FakeHubApi(monkeypatch)
    with pytest.raises(ConfigProblemsError, match="no config.json"):
        push_folder(tmp_path, HubSettings(push=True, model_id="org/x", token_env="OPGRPO_TEST_HUB_TOKEN"))
    assert fake.calls == []


@pytest.mark.parametrize("overrides, key, text", [
    (["hub.push=true"], "hub.model_id", "required when hub.push=true"),
    (["hub.push=true", "hub.model_id=org/bad name"], "hub.model_id", "not a valid repository id"),
    (["hub.push=true", "hub.model_id=org/x", "stage=eval"], "hub.push", "train no model to push"),
])
def test_a_push_that_cannot_work_fails_at_start_up_naming_the_key(compose, monkeypatch, overrides, key, text):
    from opgrpo.app.validate import ConfigError, check

    FakeHubApi(monkeypatch)
    cfg = compose(["experiment=cpu_demo", "stage=sft", "hub.token_env=OPGRPO_TEST_HUB_TOKEN", *overrides])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert any(line.strip().startswith(f"{key}:") and text in line for line in str(err.value).splitlines()), err.value


def test_push_needs_the_hub_and_a_token(monkeypatch):
    from huggingface_hub import constants

    from opgrpo.models.hub import HubSettings

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert any(p.startswith("push: HF_HUB_OFFLINE=1") for p in HubSettings(push=True, model_id="org/x").problems())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("OPGRPO_NO_SUCH_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    problems = HubSettings(push=True, model_id="org/x", token_env="OPGRPO_NO_SUCH_TOKEN").problems()
    assert problems == ["token_env: no Hub token: $OPGRPO_NO_SUCH_TOKEN is unset and no `hf auth login` token is saved"]
    assert HubSettings().problems() == []  # no push, nothing to check


def test_run_ends_by_pushing_its_final_model(compose, tiny_lm, tmp_path, monkeypatch):
    """stage=sft (1 step) in-process, then the push of sft/final; only the network calls are replaced."""
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import run_stages

    fake = FakeHubApi(monkeypatch)
    cfg = compose(["experiment=cpu_demo", "stage=sft", f"model.name_or_path={tiny_lm}", "trainer.sft.trl.max_steps=1",
                   "hub.push=true", "hub.model_id=org/op-grpo-test", "hub.token_env=OPGRPO_TEST_HUB_TOKEN",
                   "hub.private=false"])
    run = RunDir(tmp_path / "run")
    run_stages(check(cfg, run))
    final = run.path / "sft" / "final"
    assert [name for name, _, _ in fake.calls] == ["create_repo", "upload_folder"]
    assert fake.calls[0][1] == ("org/op-grpo-test",) and fake.calls[0][2]["private"] is False
    upload = fake.calls[1][2]
    assert upload["folder_path"] == str(final) and upload["repo_id"] == "org/op-grpo-test"
    assert upload["token"] == "hf_test_token" and upload["revision"] is None
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md"} <= {
        p.name for p in final.iterdir()}
    assert run.summary["hub/model_id"] == "org/op-grpo-test"
    assert run.summary["hub/url"] == "https://huggingface.co/org/op-grpo-test/commit/abc"


def test_eval_stage_writes_its_numbers_into_the_pushed_card(compose, tiny_lm, tmp_path, monkeypatch):
    """SFT (1 step) then eval (2 items, 8 tokens, reward only) in-process; the push replaces only the network."""
    from huggingface_hub import ModelCard

    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import run_stages

    fake = FakeHubApi(monkeypatch)
    cfg = compose(["experiment=cpu_demo", "pipeline=[sft,eval]", f"model.name_or_path={tiny_lm}",
                   "trainer.sft.trl.max_steps=1", "eval.nli.backend=none", "eval.generation.max_new_tokens=8",
                   "+benchmark.test_files.5=${offline:sample_test}", "benchmark.test_file=''",
                   "benchmark.max_test_items=2", "hub.push=true", "hub.model_id=org/op-grpo-test",
                   "hub.token_env=OPGRPO_TEST_HUB_TOKEN"])
    run = RunDir(tmp_path / "run")
    run_stages(check(cfg, run))
    final = run.path / "sft" / "final"
    upload = [kw for name, _, kw in fake.calls if name == "upload_folder"]
    assert len(upload) == 1 and upload[0]["folder_path"] == str(final) and upload[0]["repo_id"] == "org/op-grpo-test"
    assert run.summary["hub/model_id"] == "org/op-grpo-test"
    card = ModelCard.load(str(final / "README.md"))
    assert card.data.model_name == "op-grpo-test" and 'from_pretrained("org/op-grpo-test"' in card.text
    assert "**sample**" in card.text and str(tiny_lm) in card.text
    coverage = run.summary["eval/reward/coverage_rate"]
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} >= {("reward/coverage_rate", coverage)}
    assert "No NLI scoring (eval.nli.backend=none)" in card.text and "Not evaluated" not in card.text


def test_grpo_card_names_base_model_data_reward_weights_and_thresholds(compose, tmp_path):
    """The app's card of grpo/final (written after the stage; no training here: a stand-in final/)."""
    from types import SimpleNamespace

    from huggingface_hub import ModelCard

    from opgrpo.app.context import RunContext
    from opgrpo.app.publish import write_card
    from opgrpo.app.rundir import RunDir

    cfg = compose(["experiment=cpu_demo", "model.name_or_path=Qwen/Qwen2.5-3B-Instruct", "reward.weights.coverage=0.5",
                   "reward.tau_cov=0.61", "trainer.grpo.trl.learning_rate=2e-6", "hub.model_id=org/op-grpo-3b"])
    ctx = RunContext(to_config(cfg), RunDir(tmp_path))
    _model_folder(tmp_path / "grpo" / "final")

    def op_total(prompts, completions, **kw):
        return [0.0] * len(completions)

    rewards = SimpleNamespace(funcs=[op_total], weights=[1.0], trl_aggregation="sum_then_normalize")
    path = write_card(ctx, "grpo", str(tmp_path / "sft" / "final"), metrics={"num_prompts": 25}, rewards=rewards)
    card = ModelCard.load(str(path))
    assert card.data.base_model == "Qwen/Qwen2.5-3B-Instruct" and card.data.model_name == "op-grpo-3b"
    assert {"opgrpo", "grpo", "cpu_demo"} <= set(card.data.tags)
    text = card.text
    assert "weights: coverage 0.5, uniqueness 0.3, format 0.1, tag 1" in text
    assert "tau_cov (coverage threshold): 0.61" in text and "tau_uniq (uniqueness threshold): 0.6" in text
    assert "TRL reward functions (weight): op_total 1" in text and "| training examples | 25 |" in text
    assert "**sample**" in text and "sample_train" in text and f"`{tmp_path / 'sft' / 'final'}`" in text
    assert "| `trl.learning_rate` | 2e-06 |" in text and "| `trl.num_generations` | 4 |" in text  # trainer=cpu's GRPO
    assert "| `prompts_per_step` | 2 |" in text  # opgrpo's own settings, by their names
    assert "untuned base" in text  # no estimator stage in this run: the reward's estimator is the base MiniLM


# ---- issue 27.1: a push that fails after training -----------------------------------------------------------------
NO_NETWORK = """
import sys

import httpx
from huggingface_hub import HfApi, constants

constants.HF_HUB_OFFLINE = False  # a token, the Hub not switched off, but no network: only the calls fail


def create_repo(api, repo_id, **kwargs):
    return f"https://huggingface.co/{repo_id}"


def upload_folder(api, **kwargs):
    raise httpx.ConnectError("[Errno -2] Name or service not known")


HfApi.create_repo, HfApi.upload_folder = create_repo, upload_folder
from opgrpo.app.cli import main

sys.argv[0] = "opgrpo"
main()
"""


def test_a_failed_push_leaves_the_run_completed_and_prints_the_retry_that_works(compose, tiny_lm, tmp_path,
                                                                               monkeypatch):
    """The entrypoint (a subprocess; only HfApi's network calls replaced, the upload raising httpx's ConnectError):
    SFT (1 step) finishes, the push fails; the run completes with the push recorded failed, and the printed retry
    command (stage=push) run in-process uploads that run's sft/final."""
    import os
    import shlex
    import subprocess
    import sys

    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import run_stages

    run = tmp_path / "run"
    env = {**os.environ, "OPGRPO_TEST_HUB_TOKEN": "hf_test_token", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-c", NO_NETWORK, "experiment=cpu_demo", "stage=sft",
                          f"model.name_or_path={tiny_lm}", "trainer.sft.trl.max_steps=1", "hub.push=true",
                          "hub.model_id=org/op-grpo-test", "hub.token_env=OPGRPO_TEST_HUB_TOKEN",
                          f"hydra.run.dir={run}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed", status
    hub = status["hub"]
    assert hub["push"] == "failed" and hub["model_id"] == "org/op-grpo-test"
    assert hub["error"] == "ConnectError: [Errno -2] Name or service not known"
    retry = (f"opgrpo stage=push hub.model_id=org/op-grpo-test hub.run_dir={run} "
             "hub.token_env=OPGRPO_TEST_HUB_TOKEN")
    assert hub["retry"] == retry
    summary = json.loads((run / "summary.json").read_text())
    assert summary["hub/push"] == "failed" and summary["hub/model_id"] == "org/op-grpo-test"
    assert "ConnectError" in summary["hub/error"] and (run / "sft" / "final" / "config.json").is_file()
    # one log line naming the step, the reason and the retry command, on the console and in the log file
    line = next(x for x in out.splitlines() if "step hub push failed" in x)
    assert "org/op-grpo-test" in line and "ConnectError: [Errno -2] Name or service not known" in line
    assert f"  {retry}" in out.splitlines() and retry in "".join(p.read_text() for p in run.glob("*.log"))
    assert "Traceback" not in out

    fake = FakeHubApi(monkeypatch)  # the retry, as printed, through the stage it names
    ctx = check(compose(shlex.split(retry)[1:]), RunDir(tmp_path / "retry"))
    run_stages(ctx)
    upload = [kw for name, _, kw in fake.calls if name == "upload_folder"]
    assert len(upload) == 1 and upload[0]["folder_path"] == str(run / "sft" / "final")
    assert upload[0]["repo_id"] == "org/op-grpo-test" and upload[0]["commit_message"] == f"opgrpo: sft model from {run}"
    assert ctx.hub_push["push"] == "done" and ctx.run.summary["hub/push"] == "done"


def test_stage_push_uploads_the_last_final_model_of_a_run(compose, tmp_path, monkeypatch):
    """stage=push on a finished run directory (grpo/final and sft/final: the last one, grpo's, is pushed)."""
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import STAGES, run_stages

    assert "push" in STAGES and STAGES["push"].__doc__
    fake = FakeHubApi(monkeypatch)
    src = tmp_path / "finished"
    _model_folder(src / "sft" / "final")
    final = _model_folder(src / "grpo" / "final")
    cfg = compose(["experiment=cpu_demo", "stage=push", "hub.model_id=org/x", "hub.token_env=OPGRPO_TEST_HUB_TOKEN",
                   f"hub.run_dir={src}", "hub.revision=retry"])
    run_stages(check(cfg, RunDir(tmp_path / "run")))
    assert [name for name, _, _ in fake.calls] == ["create_repo", "create_branch", "upload_folder"]
    upload = fake.calls[2][2]
    assert upload["folder_path"] == str(final) and upload["repo_id"] == "org/x" and upload["revision"] == "retry"


@pytest.mark.parametrize("run_dir, text", [
    (None, "hub.run_dir: required by stage=push"),
    ("empty", "holds no trained model"),
])
def test_stage_push_without_a_model_to_push_fails_at_start_up(compose, tmp_path, monkeypatch, run_dir, text):
    from opgrpo.app.validate import ConfigError

    FakeHubApi(monkeypatch)
    (tmp_path / "empty").mkdir()
    overrides = ["experiment=cpu_demo", "stage=push", "hub.model_id=org/x", "hub.token_env=OPGRPO_TEST_HUB_TOKEN"]
    with pytest.raises(ConfigError, match=text):
        check(compose(overrides + ([f"hub.run_dir={tmp_path / run_dir}"] if run_dir else [])))
