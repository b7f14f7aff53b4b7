"""The type check of the public surface (mypy, configured in pyproject.toml's [tool.mypy]) passes, and
it catches a call with a wrong argument type. mypy runs in this process, on its cache (.mypy_cache)."""
import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]


def mypy(monkeypatch, *files):
    """(exit status, report) of mypy with the project's config, from the repository root."""
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml"), *map(str, files)])
    return status, stdout + stderr


def test_the_public_surface_type_checks(monkeypatch):
    status, report = mypy(monkeypatch)  # the files listed in [tool.mypy]
    assert status == 0, report


def test_a_wrong_argument_type_on_the_public_surface_is_reported(monkeypatch, tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(textwrap.dedent("""
        import numpy as np
        import liif
        from liif.config import TrainConfig
        from liif.evaluation.evaluate import evaluate
        from liif.training.trainer import Trainer

        model = liif.load_model(123)
        model.upscale(np.zeros((8, 8, 3), np.uint8), size="big")
        evaluate(model, [], eval_bsize="many")
        Trainer({"name": "liif", "args": {}}, [], "runs/a", train=TrainConfig(), seed="0")
        fine = liif.create_model("edsr_baseline_liif").upscale(np.zeros((8, 8, 3), np.uint8), size=(16, 16))
    """))
    status, report = mypy(monkeypatch, user)
    assert status == 1, report
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert [int(line.split(":")[1]) for line in errors] == [8, 9, 10, 11], report  # the last call is right
    assert 'Argument 1 to "load_model" has incompatible type "int"' in errors[0]
    assert 'Argument "size" to "upscale" of "Model" has incompatible type "str"' in errors[1]
    assert '"evaluate" has incompatible type "str"' in errors[2]
    assert 'Argument "seed" to "Trainer" has incompatible type "str"' in errors[3]
