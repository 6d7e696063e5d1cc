"""The package's layer rule (README "Architecture"), read from the source with ``ast``: every import statement of
every module, the ones inside functions included.

- Only ``opgrpo/app/`` knows Hydra: no module outside it imports ``hydra``, ``omegaconf`` or ``opgrpo.app``
  (``opgrpo/__main__.py``, which is ``python -m opgrpo`` = the app's entry point, excepted).
- Imports go down the layers: a subpackage imports only subpackages of a lower layer (or itself).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "opgrpo"

LAYERS = [
    ["utils"],
    ["text"],
    ["benchmark", "models", "reward"],
    ["judges"],
    ["estimator", "training"],
    ["evaluation"],
    ["sweep"],
    ["app"],
]
"""Lowest first. The README's tiers (app > training, evaluation, estimator, sweep > reward, judges, models, benchmark,
text > utils), ordered inside a tier as the code imports: judges use models; evaluation uses the estimator; sweep uses
evaluation; benchmark, models and reward use text."""
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
HYDRA_ONLY = ("hydra", "omegaconf", "opgrpo.app")
ENTRY_POINTS = {"opgrpo/__main__.py"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (or in ``source`` placed at ``path``); relative
    imports are resolved against the module's package."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    source = path.read_text(encoding="utf-8") if source is None else source
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.append((node.lineno, module))
            if not node.module:  # `from . import x`: x may be a module of that package
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _subpackage(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(RANK), "add the new subpackage to LAYERS (and to the README's Architecture)"


def test_only_app_knows_hydra():
    bad = [f"{_name(path)}:{line}: imports {module}"
           for path in _modules() if _subpackage(path) != "app" and _name(path) not in ENTRY_POINTS
           for line, module in _imports(path) if any(_is_under(module, p) for p in HYDRA_ONLY)]
    assert not bad, "below opgrpo/app/ nothing imports Hydra, OmegaConf or opgrpo.app:\n" + "\n".join(bad)


def test_imports_go_down_the_layers():
    bad = []
    for path in _modules():
        own = _subpackage(path)
        if own is None:
            continue
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "opgrpo" or len(parts) < 2 or parts[1] == own:
                continue
            if parts[1] not in RANK or RANK[parts[1]] >= RANK[own]:
                bad.append(f"{_name(path)}:{line}: {own} (layer {RANK[own]}) imports {module} "
                           f"(layer {RANK.get(parts[1], '?')})")
    assert not bad, "an import goes up or sideways (README, Architecture):\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("import hydra.utils\n", "hydra.utils"),
    ("def f():\n    from omegaconf import OmegaConf\n", "omegaconf"),  # inside a function too
    ("from opgrpo.app.paths import config_dir\n", "opgrpo.app.paths"),
    ("from .spec import StudySpec\n", "opgrpo.sweep.optuna.spec"),
    ("from .. import report\n", "opgrpo.sweep.report"),
    ("from ...app import cli\n", "opgrpo.app"),
])
def test_the_check_sees_every_kind_of_import(source, expected):
    assert expected in [module for _, module in _imports(PACKAGE / "sweep" / "optuna" / "run.py", source)]
