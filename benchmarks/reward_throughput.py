"""Throughput of the OP reward: batched scorer vs a per-completion baseline vs the encoding floor.

Builds GRPO-like batches (``--situations`` situations x ``--group`` completions each, made from the
situation's reference lines plus noise: paraphrase-ish word drops, off-topic perspectives,
repeats, missing tags) and times, in the same process:

  (a) baseline: one completion at a time, one encode call for coverage (references + candidates)
      and another for uniqueness (candidates), rules applied per completion;
  (b) ``OPRewardScorer.score`` on the whole batch with a cold reference cache (and warm, for info);
  (c) floor: a single encode call of all unique sentences (b's encoder work, nothing else),
      timed just before and just after b and averaged, so load drift on a shared CPU hits both.

It checks that (a) and (b) give the same scores and prints b/a speedup and b/floor ratio (median
over ``--repeats``). Example::

    .venv/bin/python benchmarks/reward_throughput.py --situations 30 --group 10 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from opgrpo.reward import OPRewardScorer, RewardConfig
from opgrpo.reward.inputs import reference_sentences
from opgrpo.reward.rules import (
    coverage_score,
    format_score,
    greedy_match_count,
    uniqueness_rate,
    uniqueness_score,
)
from opgrpo.text.perspectives import (
    mask_keywords,
    parse_strict_layout,
    situation_keywords,
    split_perspective_sentences,
)

VALUES = ["Honesty", "Kindness", "Autonomy", "Fairness", "Loyalty", "Safety", "Privacy", "Justice", "Care",
          "Duty to family", "Right to life", "Respect for elders", "Gratitude", "Responsibility", "Freedom of speech",
          "Community well-being", "Self-care", "Trust", "Compassion", "Integrity", "Duty to oneself", "Equality"]
SUBJECTS = ["a friend", "my neighbour", "a colleague", "my sister", "a stranger", "the landlord", "my boss",
            "an old classmate", "the city council", "a child"]
ACTS = ["lying about", "borrowing money for", "reporting", "ignoring", "sharing photos of", "moving away from",
        "donating to", "quitting over", "forgiving", "keeping a secret about"]
TOPICS = ["a broken promise", "a lost wallet", "an unpaid debt", "a surprise party", "a medical diagnosis",
          "a noisy dog", "a failed exam", "an inheritance", "a car accident", "a job offer"]
REASONS = ["it protects the trust that relationships depend on", "people deserve to make informed choices",
           "causing needless pain should be avoided", "everyone should be treated by the same rules",
           "long-term harm outweighs short-term comfort", "personal information belongs to its owner",
           "obligations to those close to us carry special weight", "the wider community bears the consequences",
           "one's own well-being matters as well", "honest feedback helps people grow"]
NOISE = ["however", "in my view", "arguably", "to some extent", "clearly", "on balance", "of course"]


def build_batch(n_situations: int, group: int, rng: random.Random) -> tuple[list[str], list[str], list[list[str]]]:
    situations, completions, references = [], [], []
    for s in range(n_situations):
        situation = f"{rng.choice(ACTS).capitalize()} {rng.choice(SUBJECTS)} after {rng.choice(TOPICS)} (case {s})"
        names = rng.sample(VALUES, rng.randint(5, 10))
        refs = [f"In the perspective of {n}, {situation.lower()} matters because {rng.choice(REASONS)}." for n in names]
        for _ in range(group):
            lines = []
            for ref in rng.sample(refs, rng.randint(0, len(refs))):
                words = ref.split()
                if rng.random() < 0.5:  # paraphrase-ish: drop and insert a few words
                    for _ in range(rng.randint(1, 3)):
                        words.pop(rng.randrange(5, len(words)))
                    words.insert(rng.randrange(5, len(words)), rng.choice(NOISE))
                lines.append(" ".join(words))
            for _ in range(rng.randint(0, 3)):
                lines.append(f"In the perspective of {rng.choice(VALUES)}, {rng.choice(REASONS)}, {rng.choice(NOISE)}.")
            if lines and rng.random() < 0.2:
                lines.append(rng.choice(lines))
            rng.shuffle(lines)
            summary = "Overall, " + ", ".join(n.lower() for n in rng.sample(names, min(3, len(names)))) + " conflict."
            core = "\n".join(lines)
            text = (f"<core perspectives>\n{core}\n</core perspectives>\n\n<summary>\n{summary}\n</summary>"
                    if rng.random() < 0.85 else core + "\n" + summary)
            situations.append(situation)
            completions.append(text)
            references.append(refs)
    return situations, completions, references


def baseline_score(encoder, cfg: RewardConfig, situation: str, completion: str, refs: list[str]) -> dict:
    """Straightforward per-completion reward: separate encode calls for coverage and uniqueness."""
    ref_sents, _ = reference_sentences(refs)
    layout = parse_strict_layout(completion)
    kw = situation_keywords(situation)
    cands = [mask_keywords(c, kw) for c in split_perspective_sentences(layout.core)]
    cov_rate, uniq = 0.0, 1.0
    if cands and ref_sents:
        emb = encoder.encode(ref_sents + cands, normalize_embeddings=True, convert_to_numpy=True)
        r, c = emb[: len(ref_sents)], emb[len(ref_sents):]
        cov_rate = greedy_match_count(c @ r.T, cfg.tau_cov) / len(ref_sents)
    if cands:
        c = encoder.encode(cands, normalize_embeddings=True, convert_to_numpy=True)
        uniq = uniqueness_rate(c @ c.T, cfg.tau_uniq)
    comp = {"coverage": coverage_score(cov_rate, cfg), "uniqueness": uniqueness_score(uniq, cfg),
            "format": format_score(completion, cfg).score, "tag": 0.0 if layout.strict else cfg.tag_penalty}
    w = cfg.weights
    comp["total"] = max(cfg.clip_min, w.coverage * comp["coverage"] + w.uniqueness * comp["uniqueness"]
                        + w.format * comp["format"] + w.tag * comp["tag"])
    return comp


def unique_sentences(situations, completions, references) -> list[str]:
    seen: dict[str, None] = {}
    for s, c, r in zip(situations, completions, references):
        kw = situation_keywords(s)
        for sent in split_perspective_sentences(parse_strict_layout(c).core):
            seen.setdefault(mask_keywords(sent, kw))
        for ref in reference_sentences(r)[0]:
            seen.setdefault(ref)
    return list(seen)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--situations", type=int, default=30, help="situations per batch (default 30)")
    ap.add_argument("--group", type=int, default=10, help="completions per situation (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported (default 3)")
    ap.add_argument("--model", default=None, help="sentence-transformers model dir (default: offline MiniLM)")
    ap.add_argument("--device", default="cpu", help="encoder device (default cpu)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is None:
        from opgrpo.app.resources import minilm_path

        args.model = str(minilm_path())
    encoder = SentenceTransformer(args.model, device=args.device)
    cfg = RewardConfig.paper()
    situations, completions, references = build_batch(args.situations, args.group, random.Random(args.seed))
    sentences = unique_sentences(situations, completions, references)
    n_all = sum(len(split_perspective_sentences(parse_strict_layout(c).core)) for c in completions)
    print(f"{len(completions)} completions, {args.situations} situations x {args.group}; "
          f"{n_all} candidate sentences, {len(sentences)} unique sentences to encode (incl. references); "
          f"device={args.device} torch threads={torch.get_num_threads()}")
    encoder.encode(sentences[:64], normalize_embeddings=True, convert_to_numpy=True)  # warm-up

    times: dict[str, list[float]] = {"a": [], "b": [], "b_warm": [], "floor": []}
    mismatches = 0
    for rep in range(args.repeats):
        t, base = timed(lambda: [baseline_score(encoder, cfg, s, c, r)
                                 for s, c, r in zip(situations, completions, references)])
        times["a"].append(t)
        # b is flanked by two floor timings (averaged) so a load spike on this shared CPU hits both.
        floor1, _ = timed(lambda: encoder.encode(sentences, normalize_embeddings=True, convert_to_numpy=True))
        scorer = OPRewardScorer(encoder, cfg)
        t, ours = timed(lambda scorer=scorer: scorer.score(situations, completions, references))
        times["b"].append(t)
        floor2, _ = timed(lambda: encoder.encode(sentences, normalize_embeddings=True, convert_to_numpy=True))
        times["floor"].append((floor1 + floor2) / 2)
        t, _ = timed(lambda scorer=scorer: scorer.score(situations, completions, references))
        times["b_warm"].append(t)
        keys = ("coverage", "uniqueness", "format", "tag", "total")
        bad = [i for i, (x, y) in enumerate(zip(base, ours)) if any(not np.isclose(x[k], y[k]) for k in keys)]
        mismatches = max(mismatches, len(bad))
        print(f"repeat {rep + 1}: a={times['a'][-1]:.2f}s b={times['b'][-1]:.2f}s "
              f"b_warm={times['b_warm'][-1]:.2f}s floor={times['floor'][-1]:.2f}s mismatches={len(bad)}")
    for label, agg in (("min", min), ("median", statistics.median)):
        m = {k: agg(v) for k, v in times.items()}
        print(f"{label}: a {m['a']:.2f}s | b {m['b']:.2f}s | b warm {m['b_warm']:.2f}s | floor {m['floor']:.2f}s"
              f" | b/a speedup {m['a'] / m['b']:.2f}x | b/floor {m['b'] / m['floor']:.2f}x")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"throughput b = {len(completions) / med['b']:.0f} completions/s (median); "
          f"score mismatches a vs b = {mismatches} of {len(completions)}")

if __name__ == "__main__":
    main()
