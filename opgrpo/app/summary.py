"""The before/after table a pipeline run prints at its end (estimator, NLI and OP reward numbers).

It reads only the run's flat summary (``summary.json`` keys such as ``eval/reward/total``), so it shows
exactly what the run directory holds.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opgrpo.reward import SUMMARY_KEYS

_ESTIMATOR_ROWS = [
    ("estimator triplet accuracy (labelled test pairs)", "estimator/test_items/labelled/base/accuracy",
     "estimator/test_items/labelled/finetuned/accuracy"),
    ("estimator triplet accuracy (labelled validation pairs)", "estimator/val_items/labelled/base/accuracy",
     "estimator/val_items/labelled/finetuned/accuracy"),
    ("estimator triplet accuracy (held-out mined triplets)", "estimator/base/accuracy",
     "estimator/finetuned/accuracy"),
    ("estimator MNRL loss (held-out mined triplets)", "estimator/base/mnrl_loss", "estimator/finetuned/mnrl_loss"),
]


def _num(summary: Mapping[str, Any], key: str) -> str:
    v = summary.get(key)
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def before_after_table(summary: Mapping[str, Any], *, threshold: float, nli_backend: str) -> str:
    """The table: one row per number present before (``eval_base``) or after (``eval``) training."""
    rows = list(_ESTIMATOR_ROWS)
    rows += [(f"NLI accuracy > {threshold} ({nli_backend})", "eval_base/overall/accuracy", "eval/overall/accuracy"),
             ("NLI mean score", "eval_base/overall/mean", "eval/overall/mean")]
    rows += [(f"OP reward {k}", f"eval_base/reward/{k}", f"eval/reward/{k}") for k in SUMMARY_KEYS]
    # the numbers runs are ranked and compared by: one rule for every run (opgrpo.reward.evaluation)
    rows += [(f"OP reward {k} (reference rule)", f"eval_base/reference/{k}", f"eval/reference/{k}")
             for k in ("coverage_rate", "uniqueness_rate", "total")]
    width = max(len(r[0]) for r in rows)
    lines = ["", f"{'':<{width}}  {'before':>8}  {'after':>8}"]
    lines += [f"{label:<{width}}  {_num(summary, b):>8}  {_num(summary, a):>8}"
              for label, b, a in rows if b in summary or a in summary]
    lab = "estimator/test_items/labelled/"
    s = summary
    if lab + "n" in s:
        lines.append(f"estimator on the labelled test pairs: of {s.get(lab + 'groups')} pairs fine-tuning improved "
                     f"{s.get(lab + 'groups_improved')} and worsened {s.get(lab + 'groups_worsened')} (sign test "
                     f"p = {s.get(lab + 'groups_p_value', float('nan')):.2g}); of {s[lab + 'n']} triplets it fixed "
                     f"{s.get(lab + 'fixed')} and broke {s.get(lab + 'broken')}")
    return "\n".join(lines)
