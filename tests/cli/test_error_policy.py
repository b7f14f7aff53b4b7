"""The CLI's error policy: the project's own errors are one line and exit 2; any other exception
is a bug, shown with its traceback (exit 1); out of memory names the settings to lower. Every
failure of a run releases its lock and writes metrics.json saying why; a command that fails
before its run starts leaves no folder behind.

Through the CLI (a child of the CLI server) where Hydra's part is the subject (the traceback it
prints, the run folder it makes); the rest in process (`run_task_with_overrides`, the CLI's path
after composition), with a part of the library made to fail the way a bug or a full machine would."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import liif.inference.api
from conftest import compose, run_cli, run_task_with_overrides


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(d / "0.png")
    return d


@pytest.fixture(scope="module")
def test_cfg(fixtures_dir):
    """`python run.py task=test` on a folder (dataset.path set per test), composed once."""
    return compose("task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "dataset=folder",
                   "dataset.path=unset", "scales=[2]", "device=cpu")


def run_test_task(cfg, tmp_path, folder, *extra):
    """The test task on `folder` into tmp_path/run; returns (exit status, stderr)."""
    return run_task_with_overrides(cfg, f"dataset.path={folder}", f"output_dir={tmp_path / 'run'}", *extra)


@pytest.fixture
def query_raises(monkeypatch):
    """query_raises(error): every model query raises `error` from now on."""
    def install(error):
        def broken(*args, **kwargs):
            raise error
        monkeypatch.setattr(liif.inference.api.Model, "query", broken)
    return install


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_an_internal_error_shows_its_traceback_and_exits_1(tmp_path, folder, fixtures_dir):
    patch = "import liif.inference.api\ndef broken(*a, **k): raise KeyError('imnet')\nliif.inference.api.Model.query = broken"
    r = run_cli("task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "dataset=folder",
                f"dataset.path={folder}", "scales=[2]", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}", prelude=patch)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" in r.stderr and "KeyError: 'imnet'" in r.stderr and not r.stderr.startswith("error:")
    run_dir = tmp_path / "run"
    assert not (run_dir / ".running").exists()
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"] == "KeyError: 'imnet'"


@pytest.mark.parametrize("error", [ValueError("bad shape"), RuntimeError("size mismatch"), FileNotFoundError("x.npy")],
                         ids=repr)
def test_builtin_errors_are_not_disguised_as_user_errors(test_cfg, tmp_path, folder, query_raises, error):
    """The task lets them through (the CLI test above: Hydra then prints the traceback, exit 1)."""
    query_raises(error)
    with pytest.raises(type(error), match=str(error)):
        run_test_task(test_cfg, tmp_path, folder)
    assert metrics(tmp_path / "run")["error"] == f"{type(error).__name__}: {error}"


def test_a_project_error_is_one_line_and_exit_2(test_cfg, tmp_path, folder, query_raises):
    from liif.errors import DataError
    query_raises(DataError("the images are all black"))
    status, err = run_test_task(test_cfg, tmp_path, folder)
    assert status == 2 and err == "error: the images are all black\n", err[-2000:]
    assert metrics(tmp_path / "run")["error"] == "DataError: the images are all black"
    with pytest.raises(DataError):  # debug=true: raised, for Hydra to print its traceback
        run_test_task(test_cfg, tmp_path / "dbg", folder, "debug=true")


def test_out_of_memory_names_the_settings_to_lower(test_cfg, tmp_path, folder, query_raises):
    query_raises(MemoryError())
    status, err = run_test_task(test_cfg, tmp_path, folder)
    assert status == 2 and "Traceback" not in err, err[-2000:]
    assert err.startswith("error: out of memory") and "eval_bsize" in err and "train.batch_size" in err
    assert len(err.strip().splitlines()) == 1
    assert metrics(tmp_path / "run")["status"] == "failed"
    with pytest.raises(MemoryError):  # debug=true: raised, for Hydra to print its traceback
        run_test_task(test_cfg, tmp_path / "dbg", folder, "debug=true")


def test_a_bad_checkpoint_at_test_time_leaves_no_lock_and_a_failed_record(test_cfg, tmp_path, folder):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    status, err = run_test_task(test_cfg, tmp_path, folder, f"checkpoint={bad}")
    assert status == 2 and "Traceback" not in err and "not a readable checkpoint" in err
    run_dir = tmp_path / "run"
    assert not (run_dir / ".running").exists()
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"].startswith("CheckpointError: ") and m["records"] == []
    assert (run_dir / "config.yaml").exists()
    # the failed run is not "a run already there": the same folder can be used again
    status, err = run_test_task(test_cfg, tmp_path, folder, f"checkpoint={bad}")
    assert status == 2 and "already holds a run" not in err


@pytest.mark.parametrize("args, message", [
    (["task=demo", "checkpoint=x.pth"], "task=demo needs input="),
    (["task=report"], "task=report needs dir="),
    (["task=report", "dir=/nonexistent/sweep"], "no such sweep folder"),
])
def test_a_task_without_what_it_needs_is_one_line(tmp_path, args, message):
    status, err = run_task_with_overrides(compose(*args), f"output_dir={tmp_path / 'run'}")
    assert status == 2 and message in err and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["task=test"], "task=test needs checkpoint=PATH"),  # before the run starts: no folder
    (["train.batch_size=3", "dataset=folder", "dataset.path=/nonexistent/imgs"], "dataset folder not found"),  # after
])
def test_a_command_that_fails_on_bad_input_leaves_no_empty_run_folder(tmp_path, args, message):
    """Hydra makes the run folder before the task starts; the CLI removes it when the run never began."""
    run_dir = tmp_path / "outputs" / "run"
    r = run_cli(*args, f"hydra.run.dir={run_dir}", timeout=300)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    if run_dir.exists():  # only when the run had started: then it says why it failed
        assert set(os.listdir(run_dir)) - {".hydra", "run.log"}, os.listdir(run_dir)
        assert metrics(run_dir)["status"] == "failed"
