"""PyTorch DistributedDataParallel training (`torchrun --nproc_per_node=N run.py ...`) on CPU
(gloo): the same losses and test PSNR as one process with the same global batch, and one
set of outputs (rank 0's)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_same_training, noise_photos, train_twice
from liif.data.loader import iterate_batches, len_batches

TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=2", "dataset.train.repeat=5",
        "train.batch_size=4", "train.epoch_val=1", "train.inp_size=8", "train.sample_q=16", "dataset.val.repeat=1", "scales=[2]",
        "device=cpu", "framework.threads=1", "dataset=folder"]
# 3 photos x repeat 5 = 15 items: steps of 4, 4, 4 and 3 items; that last one splits 2/1 over 2 ranks


class _Items:
    def __len__(self):
        return 11

    def __getitem__(self, i):
        return {"i": np.array(i)}


@pytest.mark.parametrize("world", [2, 4])
def test_rank_shards_make_up_the_single_process_batches(world):
    data, batch_size = _Items(), 4
    whole = [b["i"].tolist() for b in iterate_batches(data, batch_size, shuffle=True, seed=5, epoch=3)]
    shards = [[b["i"].tolist() for b in iterate_batches(data, batch_size, shuffle=True, seed=5, epoch=3, rank=r, world_size=world)]
              for r in range(world)]
    n = len_batches(len(data), batch_size, world_size=world)
    assert all(len(s) == n for s in shards)
    for b in range(n):
        assert sorted(sum((s[b] for s in shards), [])) == sorted(whole[b])
        assert shards[0][b] == whole[b][0::world]
    # 11 = 2 * 4 + 3: the partial batch of 3 splits over 2 ranks, not over 4 (it is dropped)
    assert n == (3 if world == 2 else 2)


def _torchrun(nproc, *args, timeout=300):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    data = noise_photos(tmp_path / "imgs")
    args = [*TINY, f"dataset.path={data}"]
    torchrun = lambda *a: _torchrun(2, *a)  # noqa: E731
    train_twice(torchrun, args, tmp_path / "ddp", tmp_path / "single")

    assert_same_training(tmp_path / "ddp", tmp_path / "single", n_epochs=2)
    m = ("ddp", "single")

    # one set of outputs, and the saved weights are the unwrapped model's
    for k in m:
        assert sorted(os.listdir(tmp_path / k / "checkpoints")) == ["epoch-best.pth", "epoch-last.pth"]
        assert len(list((tmp_path / k).rglob("metrics.json"))) == 1
    import torch
    sd = torch.load(tmp_path / "ddp" / "checkpoints" / "epoch-last.pth", map_location="cpu", weights_only=True)["model"]["sd"]
    assert not any(key.startswith("module.") for key in sd)
    single_sd = torch.load(tmp_path / "single" / "checkpoints" / "epoch-last.pth", map_location="cpu",
                           weights_only=True)["model"]["sd"]
    assert sorted(sd) == sorted(single_sd)

    # resume (every rank loads rank 0's checkpoint) continues as the single process does
    train_twice(torchrun, [*args, "train.epochs=3", "resume=true"], tmp_path / "ddp", tmp_path / "single")
    hist = {k: json.loads((tmp_path / k / "metrics.json").read_text())["train"]["history"] for k in m}
    assert len(hist["ddp"]) == len(hist["single"]) == 3
    np.testing.assert_allclose([r["loss"] for r in hist["ddp"]], [r["loss"] for r in hist["single"]], rtol=1e-5)


@pytest.mark.slow
def test_global_batch_not_divisible_by_the_processes_is_a_clear_error(tmp_path):
    data = noise_photos(tmp_path / "imgs")
    result = _torchrun(2, *TINY, "train.batch_size=3", f"dataset.path={data}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "must be divisible by the number of processes (2)" in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_hydras_default_run_folders_leave_one_folder_the_run(tmp_path):
    """Without hydra.run.dir every rank gets its own default Hydra folder; the other ranks remove
    theirs, so one folder remains: the run (metrics.json)."""
    data = noise_photos(tmp_path / "imgs")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "run.py"), *TINY, "train.epochs=1", "train.max_steps_per_epoch=1",
                        f"dataset.path={data}"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    [day] = (tmp_path / "outputs").iterdir()
    [run] = day.iterdir()
    assert (run / "metrics.json").is_file()
