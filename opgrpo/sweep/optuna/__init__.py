"""An Optuna study over ``opgrpo`` runs, one run per trial (the library behind ``opgrpo-optuna``; plain code, no Hydra).

Modules: ``spec`` (``StudySpec``: the search space and fixed overrides read from a ``sweeps/optuna.yaml``-style
file), ``run`` (``run_study``: open or resume the study, worker threads ask, launch and tell), ``trial`` (one
trial's command, launch and outcome), ``heartbeat`` (live and stale trials of concurrent drivers), ``study``
(storage, sampler, objectives, each trial's overrides) and ``outputs`` (study.csv, best.json, the Pareto files).
The command line, which parses the spec's Hydra sweep syntax, is ``opgrpo.app.optuna_cli``.
"""
