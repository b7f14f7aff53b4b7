"""The CLI's error policy: the project's own errors are one line and exit 2; any other exception
is a bug, shown with its traceback (exit 1); out of memory names the settings to lower. Every
failure of a run releases its lock and writes metrics.json saying why; a command that fails
before its run starts leaves no folder behind."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

pytestmark = pytest.mark.slow


def run_patched(patch, *args):
    """`python run.py ARGS` with `patch` (Python code) run first in the same process, to make a
    part of the library fail the way a bug or a full machine would."""
    code = (f"import sys, runpy\n{patch}\n"
            f"sys.argv = ['run.py', *{list(map(str, args))!r}]\n"
            f"runpy.run_path({str(ROOT / 'run.py')!r}, run_name='__main__')\n")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(d / "0.png")
    return d


def test_args(tmp_path, folder, fixtures_dir, *extra):
    return ["task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "dataset=folder",
            f"dataset.path={folder}", "scales=[2]", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}", *extra]


test_args.__test__ = False

QUERY_RAISES = "import liif.inference.api\ndef broken(*a, **k): raise {}\nliif.inference.api.Model.query = broken"


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_an_internal_error_shows_its_traceback_and_exits_1(tmp_path, folder, fixtures_dir):
    r = run_patched(QUERY_RAISES.format("KeyError('imnet')"), *test_args(tmp_path, folder, fixtures_dir))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" in r.stderr and "KeyError: 'imnet'" in r.stderr and not r.stderr.startswith("error:")
    run_dir = tmp_path / "run"
    assert not (run_dir / ".running").exists()
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"] == "KeyError: 'imnet'"


@pytest.mark.parametrize("error", ["ValueError('bad shape')", "RuntimeError('size mismatch')",
                                   "FileNotFoundError('x.npy')"])
def test_builtin_errors_are_not_disguised_as_user_errors(tmp_path, folder, fixtures_dir, error):
    r = run_patched(QUERY_RAISES.format(error), *test_args(tmp_path, folder, fixtures_dir))
    assert r.returncode == 1 and "Traceback" in r.stderr, r.stderr[-2000:]


def test_a_project_error_is_one_line_and_exit_2(tmp_path, folder, fixtures_dir):
    patch = QUERY_RAISES.format("__import__('liif.errors').errors.DataError('the images are all black')")
    r = run_patched(patch, *test_args(tmp_path, folder, fixtures_dir))
    assert r.returncode == 2 and r.stderr == "error: the images are all black\n", r.stderr[-2000:]
    assert metrics(tmp_path / "run")["error"] == "DataError: the images are all black"


def test_out_of_memory_names_the_settings_to_lower(tmp_path, folder, fixtures_dir):
    r = run_patched(QUERY_RAISES.format("MemoryError()"), *test_args(tmp_path, folder, fixtures_dir))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith("error: out of memory") and "eval_bsize" in r.stderr and "train.batch_size" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert metrics(tmp_path / "run")["status"] == "failed"
    debug = run_patched(QUERY_RAISES.format("MemoryError()"),
                        *test_args(tmp_path, folder, fixtures_dir, "debug=true", f"hydra.run.dir={tmp_path / 'dbg'}"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MemoryError" in debug.stderr


def test_a_bad_checkpoint_at_test_time_leaves_no_lock_and_a_failed_record(tmp_path, folder):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    args = test_args(tmp_path, folder, tmp_path)
    args[1] = f"checkpoint={bad}"
    r = run_patched("", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a readable checkpoint" in r.stderr
    run_dir = tmp_path / "run"
    assert not (run_dir / ".running").exists()
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"].startswith("CheckpointError: ") and m["records"] == []
    assert (run_dir / "config.yaml").exists()
    # the failed run is not "a run already there": the same folder can be used again
    again = run_patched("", *args[:1], f"checkpoint={bad}", *args[2:])
    assert again.returncode == 2 and "already holds a run" not in again.stderr


@pytest.mark.parametrize("args, message", [
    (["task=test"], "task=test needs checkpoint=PATH"),
    (["task=demo", "checkpoint=x.pth"], "task=demo needs input="),
    (["task=report"], "task=report needs dir="),
    (["task=report", "dir=/nonexistent/sweep"], "no such sweep folder"),
    (["train.batch_size=3", "dataset=folder", "dataset.path=/nonexistent/imgs"], "dataset folder not found"),
])
def test_a_command_that_fails_on_bad_input_leaves_no_empty_run_folder(tmp_path, args, message):
    run_dir = tmp_path / "outputs" / "run"
    r = run_patched("", *args, f"hydra.run.dir={run_dir}")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    if run_dir.exists():  # only when the run had started: then it says why it failed
        assert set(os.listdir(run_dir)) - {".hydra", "run.log"}, os.listdir(run_dir)
        assert metrics(run_dir)["status"] == "failed"
