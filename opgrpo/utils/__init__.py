"""Small helpers every layer may use (no torch, no Hydra).

Modules: ``jsonio`` (JSON-safe values, JSON Lines read/append, ``flatten``), ``runfiles`` (a run directory's
file names, the run-status strings, ``read_status`` / ``read_summary``), ``checks`` (collecting config
problems), ``fielddocs`` (attribute docstrings of config dataclasses), ``imports`` (objects by import path) and
``locks`` (files shared by concurrent jobs: atomic writes, heartbeats, stage locks, ``publish_dir``).
"""
