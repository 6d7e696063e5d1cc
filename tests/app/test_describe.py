"""``opgrpo stage=describe`` (issue 30.4): ``describe=all`` has the top-level keys too, and an unknown section
(``describe=resume``, a key and not a section; ``describe=trainer.grp``, a typo) is a start-up problem of the key
``describe`` that lists the valid sections, without a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from opgrpo.app.describe import TOP_LEVEL, describe, describe_problem, sections
from opgrpo.app.runconfig import to_config


def test_all_has_the_top_level_keys_and_every_section(compose):
    cfg = to_config(compose(["experiment=cpu_demo"]))
    text = describe(cfg, "all")
    top = text.split("\n\n")[0]
    assert top.startswith(f"== {TOP_LEVEL} ==")
    for key in ("seed = 42", "resume = ", "init_from = ''", "objective = 'eval/"):
        assert f"\n  {key}" in top, key
    for section in ("reward", "trainer", "estimator", "benchmark", "eval", "logger"):
        assert f"== {section} ==" in text, section
    assert "\n  trainer.grpo.trl.learning_rate = " in text  # nested sections inside their parent
    assert set(sections(cfg)) >= {"reward", "trainer", "trainer.grpo", "model.lora"}


@pytest.mark.parametrize("section", ["resume", "trainer.grp", "rewards"])
def test_unknown_section_lists_the_valid_ones(compose, section):
    cfg = to_config(compose(["experiment=cpu_demo"]))
    problem = describe_problem(cfg, section)
    assert problem.startswith(f"no config section {section!r}; expected all or one of: ")
    assert "trainer.grpo" in problem and "reward" in problem
    assert describe_problem(cfg, "trainer.grpo") == describe_problem(cfg, "all") == describe_problem(cfg, "") == ""


def test_unknown_section_through_the_cli_names_the_key_without_a_traceback(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "experiment=cpu_demo", "stage=describe",
                          "describe=trainer.grp", f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "KeyError" not in out
    assert "describe: no config section 'trainer.grp'; expected all or one of:" in out and "trainer.grpo" in out
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "trainer.grp" in status["error"]
