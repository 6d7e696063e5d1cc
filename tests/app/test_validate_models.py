"""Issue 27.3: every model a stage will load is checked at start-up, naming its key, before any model loads: the
reward's estimator as the eval/grpo stages will choose it (reward.estimator_path, the estimator of the run the
responses come from, else estimator.base_model), the estimator's judge and the eval / OP-Bench judges of kind
transformers. Offline, a hub id must be in the cache, and the message says ``stage=prefetch`` fetches it."""
from __future__ import annotations

import json

import pytest

from opgrpo.app.validate import ConfigError, check

MISSING = "org/not-in-any-cache"


def _problems(cfg) -> list[str]:
    with pytest.raises(ConfigError) as err:
        check(cfg)
    return [line.strip() for line in str(err.value).splitlines()[1:]]


def _one(problems: list[str], key: str) -> str:
    found = [p for p in problems if p.startswith(f"{key}:")]
    assert len(found) == 1, problems
    return found[0]


@pytest.fixture
def model_dir(tmp_path):
    """A directory validation takes for a model (a config and weights; nothing is loaded at start-up)."""
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_eval_checks_the_default_reward_estimator_it_will_load(compose, responses_file, model_dir):
    """The issue's command: no experiment, a responses file, a local NLI model; the reward's estimator is
    estimator.base_model (paraphrase-mpnet in the paper preset), which offline and uncached failed only after NLI."""
    args = ["stage=eval", "eval=cpu", f"eval.responses_file={responses_file}", f"eval.nli.model={model_dir}"]
    problem = _one(_problems(compose([*args, f"estimator.base_model={MISSING}"])), "estimator.base_model")
    assert f"{MISSING!r} is neither a local directory nor in the hub cache (HF_HUB_OFFLINE=1)" in problem
    assert "the reward estimator of stage eval" in problem and "opgrpo stage=prefetch" in problem
    from huggingface_hub import try_to_load_from_cache

    default = "sentence-transformers/paraphrase-mpnet-base-v2"
    if not isinstance(try_to_load_from_cache(default, "config.json"), str):  # the issue's own case, where uncached
        assert default in _one(_problems(compose(args)), "estimator.base_model")
    check(compose([*args, f"reward.estimator_path={model_dir}"]))  # another estimator given: the base is not loaded


def test_a_reward_estimator_path_is_checked_for_every_stage_that_scores(compose, responses_file, model_dir):
    args = ["experiment=cpu_demo", f"eval.responses_file={responses_file}", f"eval.nli.model={model_dir}"]
    for stage in ("eval", "eval_base"):
        problem = _one(_problems(compose([*args, f"stage={stage}", f"reward.estimator_path={MISSING}"])),
                       "reward.estimator_path")
        assert f"the reward estimator of stage {stage}" in problem and "stage=prefetch" in problem


def test_the_estimator_of_the_run_the_responses_come_from_is_checked(compose, tmp_path, responses_file, model_dir):
    """Responses inside a finished run whose estimator/model holds no model: named under reward.estimator_path (the
    key that picks another), saying where it came from."""
    run = tmp_path / "old_run"
    (run / "estimator" / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("stage: pipeline\n")
    (run / "status.json").write_text(json.dumps({"status": "completed"}))
    responses = run / "eval" / "responses.jsonl"
    responses.parent.mkdir()
    responses.write_text(responses_file.read_text())
    problem = _one(_problems(compose(["experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses}",
                                      f"eval.nli.model={model_dir}"])), "reward.estimator_path")
    assert "holds no model" in problem and "the estimator of the run eval.responses_file comes from" in problem


def test_the_estimator_stage_checks_its_base_and_its_local_judge(compose):
    problems = _problems(compose(["experiment=cpu_demo", "stage=estimator", f"estimator.base_model={MISSING}",
                                  "estimator.judge.kind=transformers", f"estimator.judge.model={MISSING}/judge"]))
    assert "stage=prefetch" in _one(problems, "estimator.base_model")
    assert f"'{MISSING}/judge'" in _one(problems, "estimator.judge.model")  # a path: no such model directory


@pytest.mark.parametrize("section, stage", [("eval", "eval"), ("opbench", "opbench")])
def test_local_judges_of_eval_and_opbench_are_checked(compose, tmp_path, responses_file, model_dir, section, stage):
    args = ["experiment=cpu_demo", f"stage={stage}", f"{section}.judge.kind=transformers",
            f"{section}.judge.model={MISSING}"]
    if stage == "eval":
        args += [f"eval.responses_file={responses_file}", f"eval.nli.model={model_dir}"]
    problem = _one(_problems(compose(args)), f"{section}.judge.model")
    assert "nor in the hub cache" in problem and "stage=prefetch" in problem


def test_prefetch_itself_is_not_stopped_by_what_it_would_fetch(compose):
    from opgrpo.app.publish import model_refs

    cfg = compose(["experiment=cpu_demo", "stage=prefetch", f"estimator.base_model={MISSING}",
                   "opbench.judge.kind=transformers", f"opbench.judge.model={MISSING}-judge"])
    ctx = check(cfg)
    assert {"estimator.base_model", "opbench.judge.model"} <= {r.key for r in model_refs(ctx.cfg)}
