"""The run lifecycle (liif.run.rundir.RunLifecycle) and the metrics.json record (liif.run.record.RunRecord):
every way a run can end leaves metrics.json saying how, and no lock."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

from liif.errors import RunDirError
from liif.run.record import RunRecord, TestResult, TrainSummary
from liif.run.rundir import LOCK, Interrupted, RunLifecycle, claim


def ended(tmp_path):
    assert not (tmp_path / LOCK).exists()
    return json.loads((tmp_path / "metrics.json").read_text())


def test_a_run_that_ends_normally_is_ok_with_its_config_and_results(tmp_path):
    with RunLifecycle(tmp_path, RunRecord(task="test", framework="torch"), config={"seed": 3}) as run:
        assert (tmp_path / LOCK).exists()
        run.record.records = [TestResult(dataset="Set5", scale=2, psnr=30.5)]
    m = ended(tmp_path)
    assert m["status"] == "ok" and m["error"] is None and m["records"][0]["psnr"] == 30.5
    assert m["wall_time_s"] >= 0 and m["task"] == "test"
    assert "seed: 3" in (tmp_path / "config.yaml").read_text() and "versions:" in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("error, status, message", [
    (KeyError("imnet"), "failed", "KeyError: 'imnet'"),
    (MemoryError(), "failed", "MemoryError: "),
    (Interrupted(signal.SIGTERM), "interrupted", "interrupted by SIGTERM"),
    (KeyboardInterrupt(), "interrupted", "interrupted by SIGINT"),
])
def test_every_other_ending_is_recorded_and_the_exception_goes_on(tmp_path, error, status, message):
    with pytest.raises(type(error)):
        with RunLifecycle(tmp_path, RunRecord(task="train")):
            raise error
    m = ended(tmp_path)
    assert m["status"] == status and m["error"] == message


def test_a_training_that_stopped_itself_is_interrupted(tmp_path):
    with RunLifecycle(tmp_path, RunRecord(task="train")) as run:
        run.record.train = TrainSummary(epochs=3, epochs_done=1, steps=7)
        run.interrupted(signal.SIGINT)
    m = ended(tmp_path)
    assert m["status"] == "interrupted" and m["error"] == "interrupted by SIGINT" and m["train"]["epochs_done"] == 1


def hold(run_dir, then=""):
    """A process that claims `run_dir` as a run does (RunLifecycle), runs `then` (Python code), says
    "claimed" and waits on its stdin; a real process, since what is tested is what the kernel does
    with its lock when it exits or is killed."""
    code = ("import sys\nfrom liif.run.record import RunRecord\nfrom liif.run.rundir import RunLifecycle\n"
            f"RunLifecycle({str(run_dir)!r}, RunRecord(task='train')).__enter__()\n{then}\n"
            "print('claimed', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    said = [proc.stdout.readline() for _ in range(then.count("print(") + 1)]
    assert said[-1] == "claimed\n", said
    return proc, said[:-1]


def test_a_directory_in_use_is_refused_and_left_alone(tmp_path):
    holder, _ = hold(tmp_path)
    try:
        with pytest.raises(RunDirError, match=rf"^{re.escape(str(tmp_path))} is in use by another run "
                                              rf"\(pid {holder.pid}\); choose another hydra.run.dir$"):
            with RunLifecycle(tmp_path, RunRecord(task="train"), resuming=True):
                raise AssertionError("must not start")
        assert (tmp_path / LOCK).read_text() == str(holder.pid) and not (tmp_path / "metrics.json").exists()
    finally:
        holder.communicate("")  # the holder ends (without releasing): its directory is free
    with RunLifecycle(tmp_path, RunRecord(task="train")):
        pass
    assert ended(tmp_path)["status"] == "ok"


def test_the_directory_of_a_killed_run_is_free_at_once(tmp_path):
    """SIGKILL leaves `.running` behind, but not the lock: the run resumes at once, even before the
    killed process is reaped (a zombie, whose pid still answers) and though a worker it forked lives on."""
    run = tmp_path / "run"
    holder, said = hold(run, then="import os, time\nworker = os.fork()\nif worker == 0:\n    time.sleep(60)\n"
                                  "    os._exit(0)\nprint(worker, flush=True)")
    worker = int(said[0])
    try:
        holder.kill()
        os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
        assert (run / LOCK).read_text() == str(holder.pid)
        # the kernel drops a killed process's lock as it tears the process down, which can end a few
        # milliseconds after the process shows as a zombie (measured: up to ~0.2 s on a busy machine)
        deadline = time.monotonic() + 5
        while True:
            try:
                claim(run, resuming=True).release()
                break
            except RunDirError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        with RunLifecycle(run, RunRecord(task="train"), resuming=True):
            assert (run / LOCK).read_text() == str(os.getpid())
        assert ended(run)["status"] == "ok"
    finally:
        holder.wait()
        os.kill(worker, signal.SIGKILL)


def test_a_finished_run_is_not_overwritten_but_a_failed_one_may_be_run_again(tmp_path):
    with RunLifecycle(tmp_path, RunRecord(task="test")):
        pass
    with pytest.raises(RunDirError, match="already holds a run"):
        RunLifecycle(tmp_path, RunRecord(task="test")).__enter__()
    failed = tmp_path / "failed"
    with pytest.raises(ValueError):
        with RunLifecycle(failed, RunRecord(task="test")):
            raise ValueError("bad")
    with RunLifecycle(failed, RunRecord(task="test")):
        pass
    assert ended(failed)["status"] == "ok"


def test_the_model_label_falls_back_to_the_spec(tmp_path):
    with RunLifecycle(tmp_path, RunRecord(task="test")) as run:
        run.record.model_spec = {"name": "metasr", "args": {}}
    assert ended(tmp_path)["model"] == "metasr"


def test_the_record_reads_back_what_it_wrote_and_tolerates_old_or_odd_files():
    record = RunRecord(status="ok", task="train", seed=1, paper={"table": 3, "row": "LIIF"},
                       records=[TestResult(dataset="DIV2K", scale=4, psnr=28.9, n_images=100)],
                       train=TrainSummary(epochs=2, epochs_done=2, history=[{"epoch": 1, "loss": 0.1}]),
                       extra={"estimate_s": 12})
    data = json.loads(json.dumps(record.to_dict()))
    assert data["estimate_s"] == 12  # fields of newer versions survive a round trip
    assert RunRecord.from_dict(data) == record
    odd = RunRecord.from_dict({"status": "ok", "seed": "zero", "records": [{"psnr": 30.0, "future": 1}, "junk"],
                               "train": {"history": "none"}, "wall_time_s": float("nan")})
    assert odd.seed is None and odd.wall_time_s is None and odd.train.history == []
    assert [r.psnr for r in odd.records] == [30.0]
    assert RunRecord.from_dict({}).status == "failed"  # a record that does not say ok is not ok
    with pytest.raises(ValueError):
        RunRecord.from_dict(["not", "a", "dict"])


def test_the_record_drops_numbers_no_sum_can_use_and_mistyped_train_fields():
    """NaN, Infinity, 1e999 and ints too large for a float are dropped like a field of the wrong type
    (a run never writes them; a sum or a format of them fails), in the summary of training too."""
    big = 10 ** 400
    odd = RunRecord.from_dict({"status": "ok", "seed": big, "wall_time_s": big,
                               "records": [{"psnr": float("inf"), "scale": float("nan"), "ssim": big, "cell_clip": 4}],
                               "train": {"best_val_psnr": "high", "epochs": [2], "epochs_done": 1,
                                         "history": [{"epoch": 1, "loss": float("nan"), "val_psnr": -float("inf")}]}})
    assert odd.seed is None and odd.wall_time_s is None
    rec = odd.records[0]
    assert (rec.psnr, rec.scale, rec.ssim, rec.cell_clip) == (None, None, None, 4)
    assert (odd.train.best_val_psnr, odd.train.epochs, odd.train.epochs_done) == (None, None, 1)
    assert odd.train.history == [{"epoch": 1}]


@pytest.mark.parametrize("kind", ["folder", "link", "fifo"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused_and_not_followed(tmp_path, kind):
    """A copied run folder whose `.running` is a folder, a link or a fifo: one RunDirError, and a
    link's target is neither truncated nor written."""
    out, target = tmp_path / "run", tmp_path / "precious.txt"
    out.mkdir()
    target.write_text("keep me")
    lock = out / LOCK
    {"folder": lock.mkdir, "link": lambda: lock.symlink_to(target), "fifo": lambda: os.mkfifo(lock)}[kind]()
    with pytest.raises(RunDirError, match=r"cannot lock .*\.running .*remove it or choose another hydra.run.dir"):
        with RunLifecycle(out, RunRecord(task="test")):
            pass
    assert target.read_text() == "keep me"
    assert not (out / "metrics.json").exists()


def test_the_signal_echo_ends_with_its_scope_while_a_forked_worker_lives():
    """A data-loader worker forked inside the scope holds a copy of the echo's pipe: the thread must
    still end when the scope does (not linger until the join gives up), and it still announces."""
    import multiprocessing
    from liif.run.rundir import on_signals
    heard = []
    with on_signals(lambda signum: None, announce=heard.append) as scope:
        pool = multiprocessing.get_context("fork").Pool(1)
        try:
            pool.map(abs, [1])
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not heard and time.monotonic() < deadline:  # announced from the echo's thread
                time.sleep(0.01)
            assert heard == [signal.SIGTERM]
        finally:
            echo = scope._echo
    try:
        assert not echo.thread.is_alive()
    finally:
        pool.terminate()
        pool.join()


def test_a_launchers_sigusr2_stops_the_run_as_sigterm_does_then_goes_on_to_the_launcher():
    """submitit handles SIGUSR2 (the SLURM time limit is near) in Python: during the run ours takes it (the
    run stops and saves, announced at once); once the run is saved, `forward_to_launcher` hands it to
    submitit's handler (which requeues the job). Without a launcher's handler SIGUSR2 is not ours."""
    from liif.run.rundir import forward_to_launcher, on_signals, stop_signals
    launcher, stopped, heard = [], [], []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: launcher.append(signum))
    try:
        assert signal.SIGUSR2 in stop_signals()
        with on_signals(stopped.append, announce=heard.append):
            os.kill(os.getpid(), signal.SIGUSR2)
            deadline = time.monotonic() + 5
            while not (stopped and heard) and time.monotonic() < deadline:
                time.sleep(0.01)
            forward_to_launcher(signal.SIGUSR2)  # inside the scope: ours is installed, nothing is forwarded
        assert stopped == heard == [signal.SIGUSR2] and launcher == []
        forward_to_launcher(signal.SIGTERM)
        assert launcher == []
        forward_to_launcher(signal.SIGUSR2)
        assert launcher == [signal.SIGUSR2]
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        assert signal.SIGUSR2 not in stop_signals()
        forward_to_launcher(signal.SIGUSR2)  # no launcher: nothing (the default would end the process)
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_a_run_of_a_slurm_job_records_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    from conftest import typed
    record = RunRecord.for_run(typed(), "train")
    assert record.slurm == {"job_id": "77", "partition": "gpu"}
    assert RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))).slurm == record.slurm
    assert RunRecord.from_dict({"slurm": {"job_id": 5, "x": "y"}}).slurm == {"x": "y"}  # a tampered field: dropped
    assert RunRecord.from_dict({"slurm": "77"}).slurm is None
