"""The stages of an `opgrpo` run, wired from the composed config to the lower layers.

One function per stage, each reading the config and the `Pipeline` state (paths produced by earlier
stages of the same run: the fine-tuned estimator, the SFT and GRPO policies) and logging its numbers
to the run directory. `run_stages` runs `stage`, or every stage of `pipeline` in order.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from opgrpo.config import to_object
from opgrpo.rundir import RunDir

log = logging.getLogger("opgrpo.stages")


@dataclass
class Pipeline:
    cfg: DictConfig
    run: RunDir
    estimator_path: str = ""
    policy_path: str = ""
    _cache: dict = field(default_factory=dict)

    # ---- data ---------------------------------------------------------------------------------
    def _load(self, ref: str, limit: int = -1):
        from opgrpo.data import load_items

        key = ("items", ref, limit)  # each file is read (and its bad rows logged) once per run
        if key in self._cache:
            return self._cache[key]
        b = self.cfg.benchmark
        items, errors = load_items(ref, format=b.format, on_error=b.on_error, split=b.hf_split or None,
                                   limit=None if limit < 0 else limit)
        if errors:
            kept = sum(e.kept for e in errors)
            log.warning("%s: %d bad row(s) skipped, %d kept with a warning (see data_errors.jsonl)",
                        ref, len(errors) - kept, kept)
            with open(self.run.path / "data_errors.jsonl", "a") as fh:
                for e in errors:
                    fh.write(json.dumps(e.__dict__) + "\n")
        self.run.log("data", {Path(ref).name: {"items": len(items), "bad_rows": sum(not e.kept for e in errors)}})
        self._cache[key] = items
        return items

    def train_val(self):
        if "train_val" not in self._cache:
            from opgrpo.data import train_val_split

            b = self.cfg.benchmark
            items = self._load(b.train_file, b.max_train_items)
            self._cache["train_val"] = train_val_split(items, val_fraction=b.val_fraction, seed=b.split_seed)
        return self._cache["train_val"]

    def all_test_items(self) -> list:
        """Every item of the test file(s), without ``benchmark.max_test_items``."""
        b = self.cfg.benchmark
        refs = list(b.test_files.values()) if b.test_files else [b.test_file] if b.test_file else []
        return [it for ref in refs for it in self._load(ref)]

    def test_splits(self) -> dict:
        if "test" not in self._cache:
            from opgrpo.data import split_by_count

            b = self.cfg.benchmark
            if b.test_files:
                splits = {name: self._load(ref) for name, ref in b.test_files.items()}
            else:
                splits = split_by_count(self.all_test_items())
            if b.max_test_items >= 0:
                splits = {k: v[: b.max_test_items] for k, v in splits.items()}
            self._cache["test"] = splits
        return self._cache["test"]

    # ---- models -------------------------------------------------------------------------------
    def encoder_path(self) -> str:
        return self.cfg.reward.estimator_path or self.estimator_path or self.cfg.estimator.base_model

    def encoder(self):
        path = self.encoder_path()
        if self._cache.get("encoder_path") != path:
            from sentence_transformers import SentenceTransformer

            from opgrpo.generation import resolve_device

            log.info("reward estimator: %s", path)
            self._cache["encoder"] = SentenceTransformer(path, device=resolve_device(self.cfg.device))
            self._cache["encoder_path"] = path
        return self._cache["encoder"]

    def current_policy(self) -> str:
        return self.policy_path or self.cfg.model.name_or_path


# ---- stages -----------------------------------------------------------------------------------
def stage_estimator(p: Pipeline) -> None:
    from opgrpo.estimator import run_estimator_stage

    train, val = p.train_val()
    cfg = to_object(p.cfg, "estimator")
    out = run_estimator_stage(train, cfg, p.run.path, device=p.cfg.device)
    p.estimator_path = str(out["model_path"])
    p.run.log("estimator", {k: v for k, v in out.items() if k not in ("model_path", "train_config")})
    sets = {}
    test_items = p.all_test_items()  # not only the eval subset (benchmark.max_test_items)
    if test_items:
        sets["test_items"] = test_items
    if val and cfg.judge.labels_file:
        sets["val_items"] = val
    if sets:
        p.run.log("estimator", heldout_estimator_eval(p, cfg, sets))


def heldout_estimator_eval(p: Pipeline, cfg, item_sets: dict[str, list]) -> dict:
    """Base vs fine-tuned estimator on items it never trained on (the test items; the validation items).

    "labelled" (when ``estimator.judge.labels_file`` is set): every triplet the human pair labels define
    on the items, independent of any model, with the triplets fine-tuning fixed and broke and a sign
    test, also counted by labelled pair (triplets sharing a pair are not independent). This is the
    headline check; the validation items serve as a dev set for preset choices.

    "mined" (test items only): triplets mined from them as training mines, with the *base* model's
    similarities. A diagnostic, biased either way: without a judge the base scores 1.0 by construction;
    with one, the hard negative is the base model's most confusable sentence, which favours any other
    model. An LLM judge (transformers/http) is not re-run here (cost): those runs mine thresholds-only.
    """
    from sentence_transformers import SentenceTransformer

    from opgrpo.estimator import evaluate_estimator, paired_comparison
    from opgrpo.generation import resolve_device
    from opgrpo.mining import mine_triplets

    device = resolve_device(p.cfg.device)
    models = {"base": SentenceTransformer(str(cfg.base_model), device=device),
              "finetuned": SentenceTransformer(str(p.estimator_path), device=device)}
    labels, judge = None, None  # thresholds-only mining unless the (free) labels are the judge
    if cfg.judge.labels_file:
        from opgrpo.pair_labels import LabelJudge, PairLabels, labelled_triplets

        labels = PairLabels.load(cfg.judge.labels_file)  # read once for the triplets and the judge
        if cfg.judge.kind == "labels":
            judge = LabelJudge(labels, cfg.judge.unlabelled)
    out: dict = {}
    for set_name, items in item_sets.items():
        triplet_sets = {}
        if labels is not None:
            for problem in labels.check_against(items):
                log.warning("%s", problem)
            triplet_sets["labelled"] = labelled_triplets(items, labels, cfg.mining.masking, cfg.judge.unlabelled)
        if set_name == "test_items":
            triplet_sets["mined"], stats = mine_triplets(
                items, models["base"], judge, cfg.mining,
                out_path=p.run.stage_dir("estimator") / "test_triplets.jsonl", resume=False)
            out.setdefault(set_name, {})["mined"] = {"n": len(triplet_sets["mined"]), "mining": stats}
        for name, triplets in triplet_sets.items():
            target = out.setdefault(set_name, {}).setdefault(name, {})
            target["n"] = len(triplets)
            if not triplets:
                continue
            res = {k: evaluate_estimator(m, triplets, scale=cfg.train.mnrl_scale, per_triplet=True,
                                         with_loss=name == "mined") for k, m in models.items()}
            pairs = [(t.item_id, frozenset((t.raw_anchor, t.raw_positive))) for t in triplets]
            paired = paired_comparison(res["base"].pop("correct"), res["finetuned"].pop("correct"),
                                       groups=pairs if name == "labelled" else None)
            target.update(res)
            target.update(paired)
            log.info("estimator on %d %s triplets of the %s: accuracy %.3f -> %.3f (fixed %d, broken %d, sign "
                     "test p=%.3g), mean cos(a,p)-cos(a,n) %.3f -> %.3f", len(triplets), name,
                     set_name.replace("_", " "), res["base"]["accuracy"], res["finetuned"]["accuracy"],
                     paired["fixed"], paired["broken"], paired["p_value"],
                     res["base"]["cos_pos"] - res["base"]["cos_neg"],
                     res["finetuned"]["cos_pos"] - res["finetuned"]["cos_neg"])
            if "groups" in paired:
                log.info("... by labelled pair: %d of %d improved, %d worsened (sign test p=%.3g)",
                         paired["groups_improved"], paired["groups"], paired["groups_worsened"],
                         paired["groups_p_value"])
    return out


def _report_to(cfg: DictConfig) -> list[str]:
    return ["wandb"] if cfg.logger.backend == "wandb" else []


def setup_wandb(cfg: DictConfig, run: RunDir) -> None:
    """Hand logger.wandb.* to the HF trainers' W&B callback (it reads these variables at wandb.init)."""
    import os

    if cfg.logger.backend != "wandb":
        return
    w = cfg.logger.wandb
    env = {"WANDB_PROJECT": w.project, "WANDB_ENTITY": w.entity, "WANDB_RUN_GROUP": w.group,
           "WANDB_NAME": w.name or run.path.name, "WANDB_TAGS": ",".join([*cfg.tags, *w.tags]),
           "WANDB_MODE": w.mode, "WANDB_DIR": str(run.path)}
    for key, value in env.items():
        if value:
            os.environ[key] = str(value)


def _deepspeed(p: Pipeline) -> str:
    if not p.cfg.deepspeed.enabled:
        return ""
    path = p.run.path / "deepspeed.json"
    path.write_text(json.dumps(OmegaConf.to_container(p.cfg.deepspeed.config, resolve=True), indent=2))
    return str(path)


def _peft(cfg: DictConfig):
    from opgrpo.training import lora_config

    return lora_config(to_object(cfg, "model.lora"))


def stage_sft(p: Pipeline) -> None:
    from opgrpo.training import run_sft

    train, _ = p.train_val()
    out_dir = p.run.stage_dir("sft")
    metrics = run_sft(p.current_policy(), train, to_object(p.cfg, "trainer.sft"), out_dir, peft=_peft(p.cfg),
                      report_to=_report_to(p.cfg), resume=p.cfg.resume, deepspeed=_deepspeed(p),
                      chat_template=p.cfg.model.chat_template)
    p.policy_path = str(out_dir / "final")
    p.run.log("sft", metrics)


def stage_grpo(p: Pipeline) -> None:
    from opgrpo.training import run_grpo

    train, _ = p.train_val()
    funcs, weights = grpo_rewards(p)
    out_dir = p.run.stage_dir("grpo")
    metrics = run_grpo(p.current_policy(), train, funcs, weights,
                       grpo_settings(p), out_dir, peft=_peft(p.cfg), report_to=_report_to(p.cfg),
                       resume=p.cfg.resume, deepspeed=_deepspeed(p), chat_template=p.cfg.model.chat_template)
    p.policy_path = str(out_dir / "final")
    p.run.log("grpo", metrics)


def grpo_settings(p: Pipeline):
    """`trainer.grpo` with the algorithm options applied: reward.aggregation=gdpo sets TRL's per-component
    normalisation (normalize_then_sum); spl.enabled (algorithm=spl) sets beta / entropy_coef (mode=loss) or
    moves the KL into the reward (mode=reward, see opgrpo.spl)."""
    settings = to_object(p.cfg, "trainer.grpo")
    if p.cfg.reward.aggregation == "gdpo":
        settings.multi_objective_aggregation = "gdpo"
    if p.cfg.spl.enabled:
        from opgrpo.spl import spl_settings

        settings = spl_settings(settings, to_object(p.cfg, "spl"))
    return settings


def grpo_rewards(p: Pipeline) -> tuple[list, list[float]]:
    """The TRL reward functions and their weights for `reward.trl_weighting`.

    ``total`` (default, exact SPEC reward): the clipped weighted total is the one trained reward; the four
    components ride along with weight 0 so TRL logs each (they share one scorer: nothing is scored twice).
    ``components``: TRL weights the four components itself (its sum is not clipped at reward.clip_min).
    ``reward.aggregation=gdpo`` implies ``components`` (GDPO normalises each component within its group, so TRL
    must see the components with their real weights; the total is logged as op/total).
    """
    from opgrpo.rewards import make_reward_functions, make_total_reward, reward_weights

    cfg = to_object(p.cfg, "reward")
    tokenizer = None
    if cfg.masking == "prompt":  # the authors' variant masks with the decoded chat prompt
        from opgrpo.generation import load_tokenizer

        tokenizer = load_tokenizer(p.current_policy(), chat_template=p.cfg.model.chat_template)
    components = make_reward_functions(p.encoder(), cfg, batch_size=cfg.encode_batch_size, tokenizer=tokenizer)
    if p.cfg.reward.trl_weighting == "components" or cfg.aggregation == "gdpo":
        funcs, weights = components, reward_weights(cfg)
    else:
        funcs, weights = [make_total_reward(components[0].scorer, cfg), *components], [1.0, 0.0, 0.0, 0.0, 0.0]
    if p.cfg.spl.enabled and p.cfg.spl.mode == "reward":  # SPL in reward form: r - alpha log pi + beta log pi_ref
        from opgrpo.spl import SPLShapingReward

        funcs, weights = [*funcs, SPLShapingReward(p.current_policy(), p.cfg.spl.alpha, p.cfg.spl.beta,
                                                   temperature=p.cfg.trainer.grpo.temperature)], [*weights, 1.0]
    return funcs, weights


def stage_eval(p: Pipeline, name: str = "eval", policy: str | None = None) -> None:
    from opgrpo.evaluate_run import evaluate

    e = p.cfg.eval
    policy = policy or e.model_path or p.current_policy()
    metrics = evaluate(p, policy, p.run.stage_dir(name))
    p.run.log(name, metrics)


def stage_report(p: Pipeline) -> None:
    from opgrpo.report import build_report

    out = build_report(Path(p.cfg.report.sweep_dir), p.run.stage_dir("report"), wandb_project=p.cfg.report.wandb_project)
    p.run.log("report", out)


def stage_compare(p: Pipeline) -> None:
    from opgrpo.evaluation import compare_runs

    labels = list(p.cfg.report.labels) or None
    out = compare_runs([Path(d) for d in p.cfg.report.run_dirs], p.run.stage_dir("compare"), labels=labels)
    p.run.log("compare", out)


def stage_pope(p: Pipeline) -> None:
    """Off-policy evaluation (opgrpo.pope) of `pope.responses_file` under `pope.model_path` (or the current policy)."""
    from opgrpo.generation import load_tokenizer, resolve_device
    from opgrpo.pope import load_logged_responses, run_pope

    cfg = to_object(p.cfg, "pope")
    rows = load_logged_responses(cfg.responses_file)
    utility = None
    if any(cfg.utility_key not in r for r in rows):  # score the OP reward total
        from opgrpo.rewards import OPRewardScorer

        scorer = OPRewardScorer(p.encoder(), to_object(p.cfg, "reward"), batch_size=p.cfg.reward.encode_batch_size)
        results = scorer.score([r.get("situation", "") for r in rows], [r["response"] for r in rows],
                               [r.get("references", []) for r in rows], None)
        utility = [float(r["total"]) for r in results]
    from transformers import AutoModelForCausalLM

    path = cfg.model_path or p.current_policy()
    tokenizer = load_tokenizer(path, chat_template=p.cfg.model.chat_template)
    model = AutoModelForCausalLM.from_pretrained(path).to(resolve_device(p.cfg.device))
    out = run_pope(rows, model, tokenizer, cfg, utility=utility)
    out.update(model=str(path), responses_file=cfg.responses_file)
    (p.run.stage_dir("pope") / "pope.json").write_text(json.dumps(out, indent=2))
    log.info("POPE value %.4f [%.4f, %.4f] (utility %.4f, coverage %.4f, ESS %.1f of %d)", out["value"],
             *out.get("value_ci", [float("nan")] * 2), out["utility"], out["coverage"], out["ess"], out["n"])
    p.run.log("pope", {k: v for k, v in out.items() if isinstance(v, (int, float))})


STAGE_FUNCS = {
    "estimator": stage_estimator,
    "sft": stage_sft,
    "grpo": stage_grpo,
    "eval": stage_eval,
    "eval_base": lambda p: stage_eval(p, "eval_base", policy=p.cfg.eval.model_path or p.cfg.model.name_or_path),
    "report": stage_report,
    "compare": stage_compare,
    "pope": stage_pope,
}


def run_stages(cfg: DictConfig, run: RunDir) -> Pipeline:
    import numpy as np
    import torch

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    p = Pipeline(cfg, run)
    setup_wandb(cfg, run)
    stages = list(cfg.pipeline) if cfg.stage == "pipeline" else [cfg.stage]
    for name in stages:
        log.info("=== stage %s ===", name)
        STAGE_FUNCS[name](p)
    if cfg.stage == "pipeline":
        print_summary(p)
    return p


def print_summary(p: Pipeline) -> None:
    """Before/after table of a pipeline: estimator accuracy, NLI accuracy and the OP reward components."""
    s = p.run.summary

    def num(key: str) -> str:
        v = s.get(key)
        return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"

    rows = [("estimator triplet accuracy (labelled test pairs)", "estimator/test_items/labelled/base/accuracy",
             "estimator/test_items/labelled/finetuned/accuracy"),
            ("estimator triplet accuracy (labelled validation pairs)", "estimator/val_items/labelled/base/accuracy",
             "estimator/val_items/labelled/finetuned/accuracy"),
            ("estimator triplet accuracy (held-out mined triplets)", "estimator/base/accuracy",
             "estimator/finetuned/accuracy"),
            ("estimator MNRL loss (held-out mined triplets)", "estimator/base/mnrl_loss",
             "estimator/finetuned/mnrl_loss"),
            (f"NLI accuracy > {p.cfg.eval.threshold} ({p.cfg.eval.nli.backend})", "eval_base/overall/accuracy",
             "eval/overall/accuracy"),
            ("NLI mean score", "eval_base/overall/mean", "eval/overall/mean")]
    rows += [(f"OP reward {k}", f"eval_base/reward/{k}", f"eval/reward/{k}")
             for k in ("total", "coverage", "uniqueness", "format", "tag", "coverage_rate", "uniqueness_rate")]
    width = max(len(r[0]) for r in rows)
    lines = ["", f"{'':<{width}}  {'before':>8}  {'after':>8}"]
    lines += [f"{label:<{width}}  {num(b):>8}  {num(a):>8}" for label, b, a in rows if b in s or a in s]
    lab = "estimator/test_items/labelled/"
    if lab + "n" in s:
        lines.append(f"estimator on the labelled test pairs: of {s.get(lab + 'groups')} pairs fine-tuning improved "
                     f"{s.get(lab + 'groups_improved')} and worsened {s.get(lab + 'groups_worsened')} (sign test "
                     f"p = {s.get(lab + 'groups_p_value', float('nan')):.2g}); of {s[lab + 'n']} triplets it fixed "
                     f"{s.get(lab + 'fixed')} and broke {s.get(lab + 'broken')}")
    lines.append(f"run directory: {p.run.path}")
    print("\n".join(lines))
