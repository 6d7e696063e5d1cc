"""Throughput of the NLI benchmark scorer against a per-item pipeline baseline and a bare floor.

Workload: ``--items`` items x ``--perspectives`` reference perspectives x ``--sentences`` response
sentences of realistic, varied lengths. Three ways to get every item's NLI score, timed in the same run:

- baseline: transformers ``pipeline("text-classification", top_k=None)`` called once per item over that
  item's (premise, hypothesis) pairs, same batch size;
- ours: ``opgrpo.evaluation.nli.score_items`` (split responses, dedupe, one length-sorted batched pass over all
  pairs of all items, restore order, aggregate);
- floor: one length-sorted batched pass over the precomputed unique pairs (tokenise, pad, forward,
  softmax; no splitting, dedup or bookkeeping).

Checks that the three agree (max |diff| <= 1e-4) and prints median wall-clock and process-CPU times
(the order of the three rotates between repeats), ours' speedup over the baseline and its ratio to
the floor. On a shared machine the CPU figures with ``--threads 1`` are the steadier ones. By default the model is a randomly initialised BERT-like
classifier (4 layers, hidden 256) with NLI labels and the MiniLM tokenizer; ``--model`` scores with a
real NLI model by path instead.

    .venv/bin/python benchmarks/nli_throughput.py --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
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


def build_model(args):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    if args.model:
        return (AutoModelForSequenceClassification.from_pretrained(args.model),
                AutoTokenizer.from_pretrained(args.model))
    from opgrpo.app.resources import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(args.seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers,
                     num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                     max_position_embeddings=512, num_labels=3, id2label=NLI_LABELS,
                     label2id={v: k for k, v in NLI_LABELS.items()})
    return BertForSequenceClassification(cfg).eval(), tok


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


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model, tok = build_model(args)
    model.to(args.device).eval()
    refs, responses = build_workload(args, tok)
    scorer = SequenceClassificationNLI(model, tok, batch_size=args.batch_size, max_length=args.max_length,
                                       device=args.device, dtype="float32", progress=False)
    entail_label = model.config.id2label[scorer.entail_idx]
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=args.device)
    all_pairs = [pair for r, resp in zip(refs, responses) for pair in item_pairs(r, resp)[2]]
    unique_pairs = list(dict.fromkeys(all_pairs))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model or f'random BERT-like, {args.layers} layers, hidden {args.hidden}'} "
          f"({n_params / 1e6:.1f}M params), device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"workload: {args.items} items x {args.perspectives} perspectives x {args.sentences} sentences = "
          f"{len(all_pairs)} pairs ({len(unique_pairs)} unique), batch size {args.batch_size}")

    # warm-up (allocator, kernels) on a slice, untimed
    run_floor(model, tok, unique_pairs[:args.batch_size * 2], args, scorer.entail_idx)

    wall = {"baseline": [], "ours": [], "floor": []}
    cpu = {"baseline": [], "ours": [], "floor": []}
    methods = {
        "baseline": lambda: run_baseline(pipe, refs, responses, args, entail_label),
        "ours": lambda: score_items(refs, responses, scorer),
        "floor": lambda: run_floor(model, tok, unique_pairs, args, scorer.entail_idx),
    }
    results = {}
    for r in range(args.repeats):
        names = list(methods)
        for k in names[r % 3:] + names[:r % 3]:  # rotate the order so load drifts hit all three alike
            w, c, results[k] = timed(methods[k])
            wall[k].append(w)
            cpu[k].append(c)
        (w_base, w_ours, w_floor), (c_base, c_ours, c_floor) = ([d[k][-1] for k in names] for d in (wall, cpu))
        print(f"repeat {r + 1}: wall baseline {w_base:.2f}s ours {w_ours:.2f}s floor {w_floor:.2f}s | "
              f"cpu baseline {c_base:.2f}s ours {c_ours:.2f}s floor {c_floor:.2f}s")

    base, floor = results["baseline"], results["floor"]
    ours = np.array([s.score for s in results["ours"]])
    ours_pairs = scorer.entailment(unique_pairs)
    diff_items = float(np.abs(ours - base).max())
    diff_pairs = float(np.abs(ours_pairs - floor).max())
    print(f"max |diff| item scores ours vs baseline: {diff_items:.2e}; pair probs ours vs floor: {diff_pairs:.2e}")
    for name, times in (("wall", wall), ("cpu", cpu)):
        med = {k: statistics.median(v) for k, v in times.items()}
        speedup, ratio = med["baseline"] / med["ours"], med["ours"] / med["floor"]
        print(f"median {name}: baseline {med['baseline']:.2f}s  ours {med['ours']:.2f}s "
              f"({len(all_pairs) / med['ours']:.0f} pairs/s)  floor {med['floor']:.2f}s  |  "
              f"speedup {speedup:.2f}x (target >= 1.5: {'PASS' if speedup >= 1.5 else 'MISS'})  "
              f"ours/floor {ratio:.2f} (target <= 1.2: {'PASS' if ratio <= 1.2 else 'MISS'})")
    ok = diff_items <= 1e-4 and diff_pairs <= 1e-4
    if not ok:
        print("FAIL: results differ by more than 1e-4", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
