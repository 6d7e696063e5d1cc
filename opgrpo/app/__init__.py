"""The Hydra app: the only code that knows Hydra/DictConfig.

cli (entrypoint), schema (the config dataclasses), validate (start-up checks), context (``RunContext``, the
run's state), stages (one function per stage + the ``STAGES`` registry), summary (before/after table),
tracking (trackers), callbacks (Hydra callbacks at the end of a multirun), publish (model cards, the Hub push, the
prefetch, from the config), describe (``stage=describe``), rundir (the run directory), paths (where ``conf/`` is),
resources (the small models installable packages ship), optuna_cli (``opgrpo-optuna``: its command line, the
spec's Hydra sweep syntax, the ``sweep=optuna`` guard).
"""
