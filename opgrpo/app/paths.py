"""Where the Hydra config root (`conf/`) lives, whichever way opgrpo is installed or started.

Order: ``$OPGRPO_CONFIG_DIR``; ``conf/`` next to the package (repo checkout / editable install);
``opgrpo/_conf`` inside the package (wheel install, see pyproject.toml). The experiment and sweep
presets are reached through ``conf/experiment -> ../experiments`` and ``conf/sweep -> ../sweeps``.
"""
from __future__ import annotations

import os
from pathlib import Path

PRIMARY = "opgrpo.yaml"


def config_dir() -> Path:
    package = Path(__file__).resolve().parent.parent  # opgrpo/
    candidates = [Path(os.environ["OPGRPO_CONFIG_DIR"])] if os.environ.get("OPGRPO_CONFIG_DIR") else []
    candidates += [package.parent / "conf", package / "_conf"]
    for c in candidates:
        if (c / PRIMARY).is_file():
            return c.resolve()
    raise FileNotFoundError(
        "opgrpo config root not found (looked for " + ", ".join(str(c / PRIMARY) for c in candidates) + "); "
        "set OPGRPO_CONFIG_DIR to the repo's conf/ directory"
    )
