"""Jittor's multi-process training under MPI (`mpirun -np 2 python run.py framework=jittor ...`) on
CPU: the same per-step losses, final weights and test PSNR as one process with the same global
batch, one set of outputs (rank 0's), and a resume that continues as the single process does."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_same_training, noise_photos, once_more_on_jittor_internal_error, train_twice

if importlib.util.find_spec("jittor") is None:  # the CLI subprocesses import it (with liif's defaults)
    pytest.skip("jittor is not installed", allow_module_level=True)
MPIRUN = shutil.which("mpirun")
pytestmark = [pytest.mark.jittor, pytest.mark.slow,
              pytest.mark.skipif(MPIRUN is None, reason="mpirun not found: apt-get install openmpi-bin "
                                 "libopenmpi-dev (bash .ci/setup_jittor.sh does)")]

# one step per epoch, so that the history's epoch losses are the per-step losses; each step is the
# 3 photos (repeat 1), split 2/1 over 2 ranks: the uneven split must still equal one process
TINY = ["framework=jittor", "model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=3", "dataset.train.repeat=1",
        "train.batch_size=4", "train.epoch_val=1", "train.inp_size=8", "train.sample_q=16", "dataset.val.repeat=1",
        "scales=[2]", "device=cpu", "framework.threads=1", "dataset=folder"]


def _photos(folder):
    # bright noise: the model starts far below every target, so no gradient is at float-noise level,
    # where Adam turns rounding differences (sums in another order) into steps of about lr (docs/jittor.md)
    return noise_photos(folder, low=160)


@once_more_on_jittor_internal_error
def _mpirun(nproc, *args, timeout=300):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(nproc), sys.executable, str(ROOT / "run.py"), *args]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpirun and its ranks (a rank stuck in a collective spins a core)
        out, err = proc.communicate()
        pytest.fail(f"mpirun timed out after {timeout} s (a deadlock?):\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _files(run_dir):
    """The run directory's files, relative, with TensorBoard's per-process event file name generalised."""
    names = [os.path.relpath(os.path.join(d, f), run_dir) for d, _, fs in os.walk(run_dir) for f in fs]
    return sorted("tb/events" if n.startswith("tb/events.out.tfevents") else n for n in names)


def _weights(run_dir):
    from liif.models import checkpoint
    return checkpoint.read(str(run_dir / "checkpoints" / "epoch-last.pth"))["model"]["sd"]


def test_two_process_mpi_matches_one_process(tmp_path):
    data = _photos(tmp_path / "imgs")
    args = [*TINY, f"dataset.path={data}"]
    mpirun = lambda *a: _mpirun(2, *a)  # noqa: E731
    train_twice(mpirun, args, tmp_path / "mpi", tmp_path / "single")

    assert_same_training(tmp_path / "mpi", tmp_path / "single", n_epochs=3)
    m = ("mpi", "single")
    w = {k: _weights(tmp_path / k) for k in m}
    assert sorted(w["mpi"]) == sorted(w["single"])
    for key in w["single"]:
        np.testing.assert_allclose(w["mpi"][key], w["single"][key], rtol=0, atol=1e-6, err_msg=key)

    # rank 0 alone writes: the same files as the single process (one TensorBoard log, one metrics.json)
    assert _files(tmp_path / "mpi") == _files(tmp_path / "single")

    # resume (every rank loads rank 0's checkpoint) continues as the single process does
    train_twice(mpirun, [*args, "train.epochs=5", "resume=true"], tmp_path / "mpi", tmp_path / "single")
    hist = {k: json.loads((tmp_path / k / "metrics.json").read_text())["train"]["history"] for k in m}
    assert len(hist["mpi"]) == len(hist["single"]) == 5
    np.testing.assert_allclose([r["loss"] for r in hist["mpi"]], [r["loss"] for r in hist["single"]], rtol=1e-5)
    w = {k: _weights(tmp_path / k) for k in m}
    for key in w["single"]:
        np.testing.assert_allclose(w["mpi"][key], w["single"][key], rtol=0, atol=1e-6, err_msg=key)


def test_global_batch_not_divisible_by_the_processes_is_a_clear_error(tmp_path):
    data = _photos(tmp_path / "imgs")
    r = _mpirun(2, *TINY, "train.batch_size=3", f"dataset.path={data}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0
    assert "must be divisible by the number of processes (2)" in r.stderr, r.stderr[-3000:]
