import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "official_liif"


@pytest.fixture(autouse=True)
def subnormal_floats():
    """Jittor compiles its kernels with -Ofast, and loading one (a new op kind) turns flush-to-zero on
    for the whole process (gcc's crtfastmath start-up code): subnormal floats then read as 0. Each
    test starts with IEEE floats again, so none depends on which jittor tests ran before it."""
    if importlib.util.find_spec("torch"):
        import torch
        torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def fixtures_dir():
    """The original code's reference outputs. In CI they must be there: fail, don't skip."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"fixtures missing in CI: {FIXTURES}")
        pytest.skip(f"fixtures not found at {FIXTURES}")
    return FIXTURES


def compose(*overrides):
    """The composed run config, as run.py would see it (output_dir made concrete)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return hydra_compose("config", overrides=["output_dir=unused", "run_name=test", *overrides])


def run_cli(*args, cwd=None, timeout=600, env=None):
    """`python run.py ARGS` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
