"""Sweeps over runs: the report that compares a sweep's runs, side-by-side NLI metrics, the Optuna driver.

Modules: ``records`` (a sweep's run directories, any list of run directories, or W&B runs read into records;
runs without evaluation numbers are skipped with the reason), ``table`` (one row per run, totals at common
reference weights, the coverage-vs-uniqueness Pareto front), ``seeds`` and ``paired`` (seed replicates grouped,
arms compared item by item), ``plots`` (its figures), ``report`` (``build_report``: the files, ``python -m
opgrpo.sweep.report``; its text in ``report_text``, its page in ``report_html``), ``compare``
(``compare_run_dirs``: given runs side by side, NLI per split), and the subpackage ``optuna`` (an Optuna study
over runs: the library behind ``opgrpo-optuna``, whose command line is ``opgrpo.app.optuna_cli``).
"""
