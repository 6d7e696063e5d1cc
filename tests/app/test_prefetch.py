"""Issue 18.3: ``stage=prefetch`` asks ``huggingface_hub.snapshot_download`` for every hub model the composed config
names (the download itself is replaced: no network in tests), skips local paths saying so, leaves out weight formats
nothing loads, and names every model it could not fetch."""
from __future__ import annotations

import json

import pytest

from opgrpo.app.runconfig import to_config

PAPER_MODELS = ["Qwen/Qwen2.5-3B-Instruct", "sentence-transformers/paraphrase-mpnet-base-v2",
                "Qwen/Qwen2.5-7B-Instruct", "microsoft/deberta-v2-xlarge-mnli"]
REPO_FILES = ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "onnx/model.onnx",
              "2_Dense/pytorch_model.bin"]


class FakeHub:
    """``snapshot_download`` that records its calls; a dry run lists REPO_FILES (those the patterns keep)."""

    def __init__(self, fail=()):
        self.calls: list[tuple[str, dict]] = []
        self.fail = set(fail)

    def __call__(self, repo_id, *, dry_run=False, **kwargs):
        import fnmatch

        from huggingface_hub.file_download import DryRunFileInfo

        self.calls.append((repo_id, {"dry_run": dry_run, **kwargs}))
        if repo_id in self.fail:
            raise OSError(f"401 Client Error for {repo_id}")
        if dry_run:
            keep = [f for f in REPO_FILES if not any(fnmatch.fnmatch(f, p) for p in kwargs.get("ignore_patterns") or [])]
            return [DryRunFileInfo(commit_hash="abc", file_size=1 << 20, filename=f, local_path=f"/cache/{f}",
                                   is_cached=False, will_download=True) for f in keep]
        return f"/cache/{repo_id}/snapshots/abc"

    def downloads(self) -> list[str]:
        return [repo for repo, kw in self.calls if not kw["dry_run"]]


@pytest.fixture
def fake_hub(monkeypatch):
    """Install a FakeHub; ``offline`` sets huggingface_hub's HF_HUB_OFFLINE (the login node: False)."""
    import huggingface_hub
    from huggingface_hub import constants

    def install(fail=(), offline=False):
        fake = FakeHub(fail)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        return fake

    return install


def _run(compose, tmp_path, overrides):
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.stages import STAGES
    from opgrpo.app.validate import check

    cfg = compose(["stage=prefetch", *overrides])
    check(cfg)  # the paper preset without its data files is a valid prefetch config
    ctx = RunContext(to_config(cfg), RunDir(tmp_path))
    STAGES["prefetch"](ctx)
    return json.loads((tmp_path / "prefetch.json").read_text())


def test_paper_config_prefetches_policy_estimator_judge_and_nli(compose, fake_hub, tmp_path, capsys):
    fake = fake_hub()
    rows = _run(compose, tmp_path, ["experiment=paper"])
    assert fake.downloads() == PAPER_MODELS
    assert [r["keys"] for r in rows] == [["model.name_or_path"], ["estimator.base_model"],
                                         ["estimator.judge.model"], ["eval.nli.model"]]
    assert {r["status"] for r in rows} == {"downloaded"}
    assert rows[0]["path"] == "/cache/Qwen/Qwen2.5-3B-Instruct/snapshots/abc"
    # the real download leaves out ONNX/TF/... and a .bin that a .safetensors in the same folder shadows; the
    # 2_Dense .bin (no .safetensors beside it) is kept
    real = next(kw for repo, kw in fake.calls if not kw["dry_run"])
    assert "onnx/*" in real["ignore_patterns"] and "pytorch_model.bin" in real["ignore_patterns"]
    assert "2_Dense/pytorch_model.bin" not in real["ignore_patterns"]
    # 1 MiB each: config, safetensors, tokenizer and the 2_Dense bin (not the shadowed bin, not the ONNX file)
    assert rows[0]["downloaded_bytes"] == 4 << 20
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-7B-Instruct" in out and "HF_HUB_OFFLINE=1" in out


def test_cpu_demo_names_only_local_models_and_downloads_nothing(compose, fake_hub, tmp_path, capsys):
    fake = fake_hub()
    rows = _run(compose, tmp_path, ["experiment=cpu_demo"])
    assert fake.calls == []
    assert {r["status"] for r in rows} == {"local"}
    # the policy and the causal-LM NLI judge are the same SmolLM2 directory: one entry, both keys
    assert ["model.name_or_path", "eval.nli.model"] in [r["keys"] for r in rows]
    assert "estimator.base_model" in [k for r in rows for k in r["keys"]]
    assert "local path, nothing to download" in capsys.readouterr().out


def test_nli_backend_none_and_http_judges_are_not_downloaded(compose, fake_hub, tmp_path):
    fake = fake_hub()
    _run(compose, tmp_path, ["experiment=paper", "eval.nli.backend=none", "estimator.judge.kind=http",
                             "estimator.judge.base_url=http://127.0.0.1:8000/v1",
                             "reward.estimator_path=org/tuned-estimator"])
    assert fake.downloads() == ["Qwen/Qwen2.5-3B-Instruct", "sentence-transformers/paraphrase-mpnet-base-v2",
                                "org/tuned-estimator"]


def test_a_failed_download_or_missing_local_path_fails_the_stage_naming_the_key(compose, fake_hub, tmp_path):
    fake = fake_hub(fail={"Qwen/Qwen2.5-7B-Instruct"})
    with pytest.raises(RuntimeError) as err:
        _run(compose, tmp_path, ["experiment=paper", "eval.nli.model=/nowhere/deberta"])
    message = str(err.value)
    assert "estimator.judge.model = 'Qwen/Qwen2.5-7B-Instruct'" in message and "401" in message
    assert "eval.nli.model = '/nowhere/deberta': no such local directory" in message
    # the other models were still fetched
    assert fake.downloads() == ["Qwen/Qwen2.5-3B-Instruct", "sentence-transformers/paraphrase-mpnet-base-v2",
                                "Qwen/Qwen2.5-7B-Instruct"]
    statuses = {r["ref"]: r["status"] for r in json.loads((tmp_path / "prefetch.json").read_text())}
    assert statuses["Qwen/Qwen2.5-3B-Instruct"] == "downloaded" and statuses["/nowhere/deberta"] == "missing"


def test_gguf_policy_downloads_only_its_file_and_the_tokenizer(compose, fake_hub, tmp_path):
    fake = fake_hub()
    _run(compose, tmp_path, ["experiment=paper", "model.name_or_path=org/model-GGUF",
                             "model.gguf_file=model-Q4_K_M.gguf"])
    repo, kwargs = next((r, kw) for r, kw in fake.calls if not kw["dry_run"])
    assert repo == "org/model-GGUF" and kwargs["allow_patterns"][0] == "model-Q4_K_M.gguf"
    assert "ignore_patterns" not in kwargs


def test_offline_prefetch_checks_the_cache(compose, fake_hub, tmp_path):
    """On a compute node (HF_HUB_OFFLINE=1) the stage downloads nothing new and says which models are not cached."""
    fake_hub(fail={"microsoft/deberta-v2-xlarge-mnli"}, offline=True)
    with pytest.raises(RuntimeError, match="eval.nli.model = 'microsoft/deberta-v2-xlarge-mnli': not in the HF cache, "
                                           "and HF_HUB_OFFLINE=1 forbids downloading it"):
        _run(compose, tmp_path, ["experiment=paper"])
    statuses = [r["status"] for r in json.loads((tmp_path / "prefetch.json").read_text())]
    assert statuses == ["cached", "cached", "cached", "failed"]


def test_modular_baseline_prefetches_every_community_model_and_its_base_once(compose, fake_hub, tmp_path):
    fake = fake_hub()
    _run(compose, tmp_path, ["experiment=paper", "baseline=modular", "eval.nli.backend=none"])
    downloads = fake.downloads()
    community = [d for d in downloads if d.startswith("bunsenfeng/")]
    assert len(community) == 6 and "mistralai/Mistral-7B-Instruct-v0.1" in downloads
    assert downloads.count("mistralai/Mistral-7B-Instruct-v0.1") == 1  # six keys name it, fetched once
