"""The pieces of crash recovery on their own (fast): the crash point switch, the removal of
temps, the files derived from epoch-last.pth, and where resume=true starts. The whole is
tested by killing real trainings in tests/e2e/test_crash.py."""
import csv
import os
import signal

import pytest

from liif.run import recovery
from liif.io import durable
from liif.errors import CheckpointError
from liif.training.trainer import resume_path

ROWS = [{"epoch": 1, "loss": 0.5, "lr": 1e-3, "val_psnr": 12.0, "seconds": 1.0},
        {"epoch": 2, "loss": 0.4, "lr": 1e-3, "val_psnr": 13.0, "seconds": 1.0},
        {"epoch": 3, "loss": 0.3, "lr": 1e-3, "val_psnr": 13.0, "seconds": 1.0}]


@pytest.fixture
def kills(monkeypatch):
    """The SIGKILLs a crash point sends, recorded instead of sent (tests/e2e/test_crash.py lets them kill)."""
    sent = []
    monkeypatch.setattr(durable.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(durable, "_hits", {})
    return sent


def test_a_crash_point_kills_the_process_the_nth_time_it_is_reached(monkeypatch, kills):
    monkeypatch.setenv("LIIF_CRASH_AT", "history.tmp:2")
    durable.crash_point("history.tmp")
    durable.crash_point("history")
    assert kills == []
    durable.crash_point("history.tmp")
    assert kills == [(os.getpid(), signal.SIGKILL)]
    durable.crash_point("history.tmp")
    assert len(kills) == 1  # the n-th time only
    monkeypatch.setenv("LIIF_CRASH_AT", "metrics")  # no count: the first time
    durable.crash_point("metrics")
    assert kills[1:] == [(os.getpid(), signal.SIGKILL)]


def test_durable_replace_names_its_points_after_the_target(tmp_path, monkeypatch, kills):
    (tmp_path / ".tmp-x").write_text("new")
    monkeypatch.setenv("LIIF_CRASH_AT", "epoch-best.tmp")
    seen = []
    monkeypatch.setattr(durable.os, "kill", lambda pid, sig: seen.append(sorted(os.listdir(tmp_path))))
    durable.replace(str(tmp_path / ".tmp-x"), str(tmp_path / "epoch-best.pth"))
    assert seen == [[".tmp-x"]]  # killed before the rename
    monkeypatch.setenv("LIIF_CRASH_AT", "epoch-best")
    (tmp_path / ".tmp-y").write_text("newer")
    durable.replace(str(tmp_path / ".tmp-y"), str(tmp_path / "epoch-best.pth"))
    assert seen[1] == ["epoch-best.pth"]  # killed after it
    assert (tmp_path / "epoch-best.pth").read_text() == "newer"


def test_remove_temps_takes_only_temps_from_every_folder(tmp_path):
    for name in ("checkpoints/.tmp-a.pth", "checkpoints/epoch-last.pth", ".tmp-b", "samples/.tmp-1-s.png",
                 "samples/s.png", "history.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert sorted(recovery.remove_temps(str(tmp_path))) == [".tmp-b", "checkpoints/.tmp-a.pth", "samples/.tmp-1-s.png"]
    left = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    assert left == ["checkpoints/epoch-last.pth", "history.csv", "samples/s.png"]


def test_the_best_epoch_is_the_first_of_equals():
    assert recovery.best_epoch(ROWS) == 2
    assert recovery.best_epoch([{**r, "val_psnr": None} for r in ROWS]) is None


def _run_dir(tmp_path, last=b"epoch 3"):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-last.pth").write_bytes(last)
    return tmp_path


def _history(run):
    with open(run / "history.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_derived_files_follow_the_last_commit(tmp_path):
    run = _run_dir(tmp_path)
    (run / "checkpoints" / "epoch-best.pth").write_bytes(b"epoch 1")  # stale: epoch 2 was killed before its copy
    (run / "history.csv").write_text("epoch,loss\n1,0.5\n")
    recovery.derive_from_last(str(run), ROWS[:2], epoch_save=2)
    assert (run / "checkpoints" / "epoch-2.pth").read_bytes() == b"epoch 3"  # a copy of epoch-last
    assert (run / "checkpoints" / "epoch-best.pth").read_bytes() == b"epoch 3"
    assert _history(run) == [1, 2]

    (run / "checkpoints" / "epoch-last.pth").write_bytes(b"later")
    recovery.derive_from_last(str(run), ROWS, epoch_save=2)  # epoch 3: not saved, not the best
    assert (run / "checkpoints" / "epoch-best.pth").read_bytes() == b"epoch 3"
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-2.pth", "epoch-best.pth", "epoch-last.pth"]
    assert _history(run) == [1, 2, 3]


def test_history_csv_is_cut_back_to_the_checkpoints_rows(tmp_path):
    run = _run_dir(tmp_path)
    recovery.rewrite_history(str(run), ROWS)
    recovery.rewrite_history(str(run), ROWS[:1])
    assert _history(run) == [1]
    recovery.rewrite_history(str(run), [])
    assert not (run / "history.csv").exists()


def test_resume_true_before_the_first_checkpoint_starts_in_place(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-x.pth").write_bytes(b"torn")
    assert resume_path(True, str(tmp_path)) is None
    assert resume_path(str(tmp_path), str(tmp_path)) is None  # resume=<this run's dir>: the same


def test_resume_true_where_no_training_began_or_without_epoch_last_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume_path(True, str(tmp_path))  # no checkpoints/: this folder never trained
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-best.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="nothing to resume"):  # not from scratch over its checkpoints
        resume_path(True, str(tmp_path))
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):  # another run's empty folder
        resume_path(str(other), str(tmp_path))


def test_resume_from_a_path_that_is_not_a_file_is_left_to_the_checkpoint_reader(tmp_path):
    """resume=<a fifo> is no 'nothing to resume: ... does not exist': checkpoint.read says what it is."""
    os.mkfifo(tmp_path / "fifo.pth")
    assert resume_path(str(tmp_path / "fifo.pth"), str(tmp_path / "run")) == str(tmp_path / "fifo.pth")

