"""Evaluating a policy's responses: the NLI benchmark and the other measures of a run (no Hydra; plain arguments).

Modules: ``run`` (the eval stage's work: responses generated or read, NLI per split, the reward on held-out items),
``responses`` (collecting and reading response files), ``nli`` (how much of each reference perspective a response
entails), ``metrics`` (per-split NLI metrics and their files), ``generate`` (``stage=generate``: a responses file),
``judge_eval`` (1-5 judge scores), ``pope`` (off-policy value from logged responses), ``opbench`` with
``opbench_files``, ``opbench_prompts`` and ``opbench_scores`` (OP-Bench / OvertonBench scoring) and ``modular``
(the Modular Pluralism baseline).
"""
