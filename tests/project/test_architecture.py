"""The layer table of docs/architecture.md, enforced: the import-linter contracts in pyproject.toml
hold for liif/ (imports inside functions included), cover every module, and break, naming
themselves, when a module imports across them."""
import os
import pkgutil
import shutil
import subprocess
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: import-linter's own dependency
    import tomli as tomllib

from importlinter import configuration
from importlinter.application.use_cases import lint_imports

import liif
from conftest import ROOT

CONTRACTS = {c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}


def test_the_import_contracts_hold():
    configuration.configure()  # what the `lint-imports` command does first
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True), \
        "an import crosses the layers of pyproject.toml (the report above names it)"


def test_the_framework_and_hydra_contracts_cover_every_other_part_of_liif():
    """A new module of liif/ is placed by the layers contract (exhaustive); this makes sure the
    forbidden contracts watch it too."""
    parts = {f"liif.{m.name}" for m in pkgutil.iter_modules(liif.__path__)}
    assert parts - set(CONTRACTS["frameworks"]["source_modules"]) == {"liif.backends"}
    assert parts - set(CONTRACTS["hydra"]["source_modules"]) == {"liif.cli"}


def test_a_planted_violation_breaks_the_contracts_it_crosses(tmp_path):
    """A copy of liif/ with two bad imports. Linted in another process: this one has imported the
    real liif, and import-linter finds the package to analyse through the loaded module."""
    shutil.copytree(ROOT / "liif", tmp_path / "liif", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "liif" / "data" / "resize.py", "a") as f:
        f.write("\nimport torch  # noqa: E402  (planted)\n")
    with open(tmp_path / "liif" / "models" / "mlp.py", "a") as f:
        f.write("\nfrom liif.cli import main  # noqa: E402,F401  (planted)\n")
    lint = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    r = subprocess.run([sys.executable, "-c", lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert f"{CONTRACTS['layers']['name']} BROKEN" in out and "liif.models.mlp -> liif.cli" in out
    assert f"{CONTRACTS['frameworks']['name']} BROKEN" in out and "liif.data.resize -> torch" in out
    assert f"{CONTRACTS['hydra']['name']} BROKEN" in out  # mlp reaches Hydra through liif.cli
