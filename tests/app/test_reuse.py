"""Stage identity (opgrpo.app.identity) and the reuse / resume / store decisions built on it (opgrpo.app.reuse),
on the real composed config, with stage folders made by hand (no training)."""
from __future__ import annotations

import json
import shutil

import pytest

from opgrpo.app.context import RunContext
from opgrpo.app.identity import extend_keys, stage_manifest
from opgrpo.app.reuse import SUPERSEDED, finish_stage, plan_stage, prepare_run
from opgrpo.app.runconfig import ConfigError, to_config
from opgrpo.app.rundir import RunDir
from opgrpo.utils.manifest import DONE, differences, read_manifest

DEMO = ["experiment=cpu_demo"]


@pytest.fixture
def typed(compose):
    return lambda *overrides: to_config(compose([*DEMO, *overrides]))


def test_a_stage_depends_on_its_own_keys_only(typed):
    base, weights = typed(), typed("reward.weights.coverage=0.5")
    for stage in ("estimator", "sft"):  # what a reward-weight sweep shares
        assert stage_manifest(stage, base).fingerprint == stage_manifest(stage, weights).fingerprint
    for stage in ("grpo", "eval"):
        diff = differences(stage_manifest(stage, base), stage_manifest(stage, weights))
        assert diff == ["reward.weights.coverage: 0.3 -> 0.5"]
    # logging cadence observes a run: not an input
    logging = typed("trainer.grpo.trl.logging_steps=7", "trainer.grpo.trl.save_steps=3")
    assert stage_manifest("grpo", base).fingerprint == stage_manifest("grpo", logging).fingerprint
    # max_steps is an input, but one a resumed run may change
    longer = stage_manifest("grpo", typed("trainer.grpo.trl.max_steps=9"))
    assert longer.fingerprint != stage_manifest("grpo", base).fingerprint
    assert not differences(stage_manifest("grpo", base), longer, extend_keys(longer))


def test_data_files_count_by_content_not_path(typed, tmp_path):
    src = typed().benchmark.train_file
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    shutil.copy(src, a)
    shutil.copy(src, b)
    fp = {p: stage_manifest("estimator", typed(f"benchmark.train_file={p}")).fingerprint for p in (a, b)}
    assert fp[a] == fp[b]
    b.write_text(b.read_text().replace("perspective", "PERSPECTIVE", 1))
    edited = stage_manifest("estimator", typed(f"benchmark.train_file={b}"))
    assert edited.fingerprint != fp[a]
    assert [d.split(":")[0] for d in differences(stage_manifest("estimator", typed(f"benchmark.train_file={a}")),
                                                 edited)] == ["benchmark.train_file"]


def _ctx(typed, run, *overrides, store=""):
    ctx = RunContext(typed(*overrides), RunDir(run))
    ctx.store_dir = str(store)
    return ctx


def _complete_sft(ctx, loss=1.0):
    """Run the 'sft stage' by hand: plan, make its product, log a number, finish."""
    plan = plan_stage("sft", ctx)
    assert plan.action == "run"
    (ctx.run.path / "sft" / "final").mkdir(parents=True, exist_ok=True)
    (ctx.run.path / "sft" / "final" / "config.json").write_text(json.dumps({"loss": loss}))
    ctx.run.log("sft", {"train_loss": loss})
    finish_stage("sft", ctx, plan)
    return plan


def test_completed_stage_is_reused_with_its_numbers_and_superseded_when_inputs_change(typed, tmp_path):
    run = tmp_path / "run"
    _complete_sft(_ctx(typed, run))
    assert read_manifest(run / "sft").state == DONE
    again = _ctx(typed, run)
    plan = plan_stage("sft", again)
    assert plan.action == "reuse" and plan.products == {"policy_path": str(run / "sft" / "final")}
    assert plan.summary["sft/train_loss"] == 1.0
    assert plan.summary["sft/lineage/inputs"] == read_manifest(run / "sft").fingerprint  # lineage travels along
    assert plan.summary["sft/lineage/benchmark.train_file"].startswith("sha256:")
    # another learning rate: the old folder is moved aside, never reused
    other = _ctx(typed, run, "trainer.sft.trl.learning_rate=0.1")
    assert plan_stage("sft", other).action == "run"
    moved = list((run / SUPERSEDED).iterdir())
    assert len(moved) == 1 and (moved[0] / "final" / "config.json").exists()
    assert read_manifest(run / "sft").state != DONE


def test_resume_continues_only_the_same_training(typed, tmp_path):
    run = tmp_path / "run"
    plan_stage("sft", _ctx(typed, run))  # started, then killed: a checkpoint and a started manifest
    (run / "sft" / "checkpoint-2").mkdir()
    assert plan_stage("sft", _ctx(typed, run)).resume is True  # the same inputs: continues (resume=null)
    assert plan_stage("sft", _ctx(typed, run, "trainer.sft.trl.max_steps=40", "resume=true")).resume is True
    with pytest.raises(ConfigError, match=r"trainer\.sft\.trl\.learning_rate: 0\.0003 -> 0\.1"):
        plan_stage("sft", _ctx(typed, run, "trainer.sft.trl.learning_rate=0.1", "resume=true"))
    assert (run / "sft" / "checkpoint-2").exists()  # the refusal kept it
    fresh = plan_stage("sft", _ctx(typed, run, "resume=false"))
    assert fresh.resume is False and not (run / "sft" / "checkpoint-2").exists()


def test_summary_holds_only_matching_stages(typed, tmp_path):
    run = tmp_path / "run"
    (run).mkdir()
    (run / "summary.json").write_text(json.dumps({"eval/reward/coverage_rate": 0.9}))  # another run's numbers
    _complete_sft(_ctx(typed, run), loss=2.0)
    ctx = _ctx(typed, run)  # a grpo-only run in the same directory
    prepare_run(ctx, ["grpo"])
    assert {k: v for k, v in ctx.run.summary.items() if "lineage" not in k} == {"sft/train_loss": 2.0}
    assert json.loads((run / "summary.json").read_text()) == ctx.run.summary
    other = _ctx(typed, run, "trainer.sft.trl.learning_rate=0.1")
    prepare_run(other, ["grpo"])
    assert other.run.summary == {}


def test_store_computes_a_shared_stage_once(typed, tmp_path):
    store = tmp_path / "store"
    a = _ctx(typed, tmp_path / "a", "reward.weights.coverage=0.5", store=store)
    _complete_sft(a)
    assert (tmp_path / "a" / "sft").is_symlink()
    entries = [p for p in store.iterdir() if p.is_dir()]
    assert len(entries) == 1 and entries[0].name.startswith("sft-")
    b = _ctx(typed, tmp_path / "b", "reward.weights.coverage=2.0", store=store)
    plan = plan_stage("sft", b)
    assert plan.action == "reuse" and plan.summary["sft/train_loss"] == 1.0
    assert (tmp_path / "b" / "sft").resolve() == entries[0].resolve()
    assert not list(store.glob("*.lock"))


def test_wandb_run_id_follows_what_the_run_computes(typed, tmp_path):
    """Issue 26.5: two unrelated runs in one directory got one W&B id (and would merge with resume="allow")."""
    from opgrpo.app.tracking import wandb_init_kwargs

    def run_id(cfg, run="run"):
        from opgrpo.app.identity import run_identity
        from opgrpo.app.runconfig import stages_of

        return wandb_init_kwargs(cfg, tmp_path / run, [], "", run_identity(cfg, stages_of(cfg)))["id"]

    same = run_id(typed())
    assert same == run_id(typed()) == run_id(typed("trainer.grpo.trl.logging_steps=5"))  # a requeued job continues
    assert same != run_id(typed("reward.weights.coverage=0.5")) != run_id(typed("seed=7"))
    assert same != run_id(typed(), "other")


def test_resume_true_never_retrains_a_completed_stage(typed, tmp_path):
    """Issue 26.8: resume=true on a completed job whose checkpoints were cleaned retrained from step 0."""
    run = tmp_path / "run"
    _complete_sft(_ctx(typed, run))
    plan = plan_stage("sft", _ctx(typed, run, "resume=true"))
    assert plan.action == "reuse" and (run / "sft" / "final" / "config.json").exists()
    with pytest.raises(ConfigError, match="kept no checkpoint to extend from"):  # more steps need a checkpoint
        plan_stage("sft", _ctx(typed, run, "resume=true", "trainer.sft.trl.max_steps=99"))


def test_numbers_of_a_stage_downstream_of_a_recomputed_one_are_dropped(typed, tmp_path):
    """Review find: stage=grpo again in a pipeline directory kept the old eval (of the old policy) in the summary."""

    run = tmp_path / "run"
    ctx = _ctx(typed, run)
    for stage in ("sft", "eval"):  # completed stages, as a finished pipeline leaves them
        m = stage_manifest(stage, ctx.cfg)
        m.state, m.products, m.summary = DONE, {}, {f"{stage}/number": 1.0}
        m.write(run / stage)
    again = _ctx(typed, run)
    prepare_run(again, ["grpo"])  # the policy eval scored is trained again
    assert again.run.summary == {"sft/number": 1.0}
    keep = _ctx(typed, run)
    prepare_run(keep, ["report"])
    assert keep.run.summary == {"sft/number": 1.0, "eval/number": 1.0}


def test_a_refused_stage_releases_the_store_lock(typed, tmp_path, monkeypatch):
    """Review find: resume=true refusing a shared stage kept its store lock, and the sweep's next job (same process)
    waited for it forever."""
    from opgrpo.app import reuse
    from opgrpo.app.stages import run_stage

    store, run = tmp_path / "store", tmp_path / "run"
    plan_stage("sft", _ctx(typed, run))  # an interrupted sft with other settings ...
    (run / "sft" / "checkpoint-1").mkdir()
    ctx = _ctx(typed, run, "trainer.sft.trl.learning_rate=0.1", "resume=true", store=store)
    with pytest.raises(ConfigError):
        run_stage("sft", ctx)  # ... refused after the store's lock was taken
    assert not reuse._HELD and not list(store.glob("*.lock"))
