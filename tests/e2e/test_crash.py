"""Crash consistency: a training SIGKILLed at every write it makes (the crash points of
liif/io/durable.py), then resumed with resume=true, ends exactly as the uninterrupted run: the same
losses bit for bit, the same checkpoints, the same files, and no debris. docs/reliability.md
lists the matrix.

Each training runs in a child of the CLI server (tests/conftest.py: a forkserver that has imported
the project but run nothing: fast, and no thread pool is forked), on a config composed once;
SIGKILL ends the child, not pytest."""
import csv
import dataclasses
import json
import os
import signal
import traceback

import numpy as np
import pytest

from conftest import ForkedCli, cli_server, noise_photos, run_cli, typed

pytestmark = pytest.mark.slow

# 3 epochs of 2 steps, validation every epoch, epoch-2.pth saved, a test pass at x2 (on three 40x40
# images: the test_set fixture). The learning rate raised 100x for epoch 3 makes it worse than epoch 2
# (12.4 dB, then 4 dB): epoch-best.pth is not the last epoch, so a stale one shows.
SETTINGS = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
            "model.args.imnet_spec.args.hidden_list=[16]", "train.batch_size=2", "train.inp_size=16",
            "train.sample_q=64", "train.max_steps_per_epoch=2", "train.epochs=3", "train.milestones=[2]",
            "train.gamma=100", "train.epoch_val=1", "train.epoch_save=2", "train.lr=1e-3", "dataset.val.repeat=1",
            "scales=[2]", "device=cpu", "framework.threads=1", "seed=3"]

# (crash points, killed once per entry, in order; where the kill lands). Every one must be reached.
MATRIX = [
    (["start"], "run directory claimed, nothing trained"),
    (["step:1"], "first step done, no checkpoint yet"),
    (["epoch-last.tmp:1"], "the first checkpoint's temp written, not renamed"),
    (["epoch-last:1"], "first commit; epoch-best and history.csv not written"),
    (["epoch-best.tmp:1"], "epoch-best's temp written, not renamed"),
    (["epoch-best:2"], "epoch 2's epoch-best written over epoch 1's, history.csv not"),
    (["history.tmp:1"], "history.csv's temp written, not renamed"),
    (["history:1"], "epoch 1 complete"),
    (["step:3"], "mid epoch 2, one step past the commit"),
    (["tensorboard:2"], "epoch 2 validated and logged, not committed"),
    (["epoch-last.tmp:2"], "epoch 2's checkpoint temp written, not renamed"),
    (["epoch-last:2"], "epoch 2 committed; epoch-2.pth never written"),
    (["epoch-2.tmp"], "epoch-2.pth's temp written, not renamed"),
    (["epoch-2"], "epoch-2.pth written, epoch-best and history.csv not"),
    (["epoch-last:3"], "training finished; history.csv lacks epoch 3"),
    (["sample_x2.tmp"], "test pass: a sample image's temp written"),
    (["metrics.tmp"], "all done but metrics.json not renamed"),
    (["epoch-last:2", "epoch-2.tmp"], "killed again while resume rebuilds epoch-2.pth"),
    (["epoch-last.tmp:1", "step:1", "history:1"], "killed three times, the first run before any checkpoint"),
]


def _train(config, crash_at):
    """In the child: the CLI's train task on `config` (a RunConfig), killed at `crash_at` (or None)."""
    if crash_at:
        os.environ["LIIF_CRASH_AT"] = crash_at
    else:
        os.environ.pop("LIIF_CRASH_AT", None)
    try:
        from liif.training.trainer import main
        main(config)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """Three small images for the final test pass (the sample set's photos would take most of each run)."""
    return noise_photos(tmp_path_factory.mktemp("crash") / "test")


@pytest.fixture(scope="module")
def train(tmp_path_factory, test_set):
    """train(run directory, resume, crash_at) -> the exit code of that training in a child process."""
    sample = tmp_path_factory.mktemp("crash") / "data" / "sample"
    config = typed(f"paths.sample_dir={sample}", *SETTINGS, f"dataset.test.0.hr={test_set}")  # composed once

    def run(out, resume=False, crash_at=None):
        child = cli_server().Process(target=_train, args=(
            dataclasses.replace(config, output_dir=str(out), resume=resume), crash_at))
        child.start()
        child.join(300)
        return child.exitcode
    return run


@pytest.fixture(scope="module")
def full_run(train, tmp_path_factory):
    """The uninterrupted run that every crashed-and-resumed one must end as."""
    full = tmp_path_factory.mktemp("crash") / "full"
    assert train(full) == 0
    return full


@pytest.mark.parametrize("points, where", MATRIX, ids=["+".join(p) for p, _ in MATRIX])
def test_killed_at_every_write_resumes_to_the_same_run(train, full_run, tmp_path, points, where):
    run = tmp_path / "run"
    for point in points:
        code = train(run, resume=run.exists(), crash_at=point)
        assert code == -signal.SIGKILL, f"{point} was not reached (exit {code})"
    assert train(run, resume=True) == 0
    assert_same_run(run, full_run)


def assert_same_run(run, full):
    m_run, m_full = (json.loads((d / "metrics.json").read_text()) for d in (run, full))
    assert m_run["status"] == "ok"
    without_seconds = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert without_seconds(m_run["train"]["history"]) == without_seconds(m_full["train"]["history"])  # bit for bit
    assert m_run["train"]["steps"] == m_full["train"]["steps"] == 6  # no step run twice or skipped
    assert [r["psnr"] for r in m_run["records"]] == [r["psnr"] for r in m_full["records"]]

    rows = _history_csv(run)
    assert without_seconds(rows) == without_seconds(_history_csv(full))
    assert [r["loss"] for r in rows] == [repr(r["loss"]) for r in m_run["train"]["history"]]  # = metrics.json

    assert sorted(os.listdir(run / "checkpoints")) == sorted(os.listdir(full / "checkpoints")) == \
        ["epoch-2.pth", "epoch-best.pth", "epoch-last.pth"]
    for name in ("epoch-last.pth", "epoch-best.pth", "epoch-2.pth"):
        assert_same_checkpoint(run / "checkpoints" / name, full / "checkpoints" / name)
    best = max(rows, key=lambda r: float(r["val_psnr"]))  # max keeps the first of equals, as training does
    assert int(best["epoch"]) == 2 and _load(run / "checkpoints" / "epoch-best.pth")["epoch"] == 2

    assert _tensorboard_scalars(run) == _tensorboard_scalars(full)

    for name in os.listdir(full / "samples"):
        assert (run / "samples" / name).read_bytes() == (full / "samples" / name).read_bytes()
    debris = [os.path.join(d, f) for d, _, fs in os.walk(run) for f in fs if f.startswith(".tmp-") or f == ".running"]
    assert debris == []


def assert_same_checkpoint(a, b):
    ca, cb = _load(a), _load(b)
    assert ca["epoch"] == cb["epoch"]
    assert sorted(ca["model"]["sd"]) == sorted(cb["model"]["sd"])
    for key in ca["model"]["sd"]:
        assert np.array_equal(ca["model"]["sd"][key], cb["model"]["sd"][key]), (a, key)
    for key in ("exp_avg", "exp_avg_sq"):
        for i, state in ca["optimizer"]["sd"]["state"].items():
            assert np.array_equal(state[key], cb["optimizer"]["sd"]["state"][i][key]), (a, i, key)
    strip = lambda s: {**s, "history": [{k: v for k, v in r.items() if k != "seconds"} for r in s["history"]]}  # noqa: E731
    assert strip(ca["liif"]) == strip(cb["liif"])


def _load(path):
    import torch
    return torch.load(path, weights_only=True)


def _history_csv(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _tensorboard_scalars(run):
    """[(tag, step, value)] as TensorBoard shows them: the event files in name order, and a
    session start at step s hides the events before it at steps >= s (resume's purge_step)."""
    import struct
    from tensorboardX.proto import event_pb2
    shown = []
    for name in sorted(os.listdir(run / "tb")):
        data = (run / "tb" / name).read_bytes()
        at = 0
        while at + 12 <= len(data):
            length = struct.unpack("<Q", data[at:at + 8])[0]
            if at + 12 + length + 4 > len(data):
                break  # a record cut by the kill: TensorBoard stops there too
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            if event.session_log.status == event_pb2.SessionLog.START:
                shown = [s for s in shown if s[1] < event.step]
            shown += [(v.tag, event.step, v.simple_value) for v in event.summary.value if v.HasField("simple_value")]
    assert shown
    return sorted(shown)


# ---- through the CLI: the case, and the plain rerun --------------------------------

def killed_cli(*args, crash_at):
    """`python run.py ARGS` (a child of the CLI server, not of pytest) killed at `crash_at`."""
    proc = ForkedCli(args, env={"LIIF_CRASH_AT": crash_at})
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def test_killed_in_the_first_checkpoint_then_rerun_plainly_or_resumed(tmp_path, test_set):
    """SIGKILL while the first checkpoint is written: a plain rerun starts in place, and so does resume=true."""
    args = [*SETTINGS, "train.epochs=1", f"paths.sample_dir={tmp_path / 'sample'}", f"dataset.test.0.hr={test_set}"]
    for follow_up in ([], ["resume=true"]):
        run = tmp_path / f"run{len(follow_up)}"
        code, err = killed_cli(*args, f"hydra.run.dir={run}", crash_at="epoch-last.tmp")
        assert code == -signal.SIGKILL, err[-2000:]
        assert [n.startswith(".tmp-") for n in os.listdir(run / "checkpoints")] == [True]  # only the temp
        again = run_cli(*args, f"hydra.run.dir={run}", *follow_up)
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
        assert sorted(os.listdir(run / "checkpoints")) == ["epoch-best.pth", "epoch-last.pth"]


def test_a_plain_rerun_after_the_first_checkpoint_says_resume(tmp_path):
    args = [*SETTINGS, "train.epochs=2", f"paths.sample_dir={tmp_path / 'sample'}", f"hydra.run.dir={tmp_path / 'run'}"]
    assert killed_cli(*args, crash_at="epoch-last:1")[0] == -signal.SIGKILL
    again = run_cli(*args)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.startswith("error: ") and "already holds a run" in again.stderr and "resume=true" in again.stderr


def test_resume_in_a_folder_that_never_trained_is_an_error(tmp_path):
    r = run_cli(*SETTINGS, f"paths.sample_dir={tmp_path / 'sample'}", f"hydra.run.dir={tmp_path / 'new'}", "resume=true")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nothing to resume" in r.stderr, r.stderr[-2000:]
