"""Sweeps over runs: the report that compares a sweep's runs, side-by-side NLI metrics, the Optuna driver.

Modules: ``records`` (a sweep's run directories or W&B runs read into records), ``table`` (one row per run,
the coverage-vs-uniqueness Pareto front), ``plots`` (its figures), ``report`` (``build_report``: the files,
``python -m opgrpo.sweep.report``), ``compare`` (``compare_runs``: NLI accuracy per split of several runs),
``optuna_spec`` (a search space from ``sweeps/optuna.yaml``) and ``optuna_driver`` (``opgrpo-optuna``).
"""
