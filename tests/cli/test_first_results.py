"""What a new user sees of a long task and of its results: an estimate up front for training,
test and demo; per scale a comparison image (input | bicubic | model | ground truth) with each
crop's PSNR, in samples/ and in TensorBoard; closing lines that name the run folder."""
import json
import logging
import types

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=2", "train.max_steps_per_epoch=4",
        "train.epoch_val=1", "train.batch_size=2", "train.inp_size=16", "train.sample_q=64", "dataset.val.repeat=1",
        "scales=[2,5]", "device=cpu", "framework.threads=1"]


def psnr_uint8(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255 ** 2
    return -10 * np.log10(mse)


def tiles(path):
    """The four tiles of a comparison image, cut where its `layout` text field says."""
    with Image.open(path) as im:
        info, pixels = dict(im.text), np.asarray(im.convert("RGB"))
    layout = json.loads(info["layout"])
    top, size, gap = layout["top"], layout["size"], layout["gap"]
    cut = {name: pixels[top:top + size, i * (size + gap):i * (size + gap) + size]
           for i, name in enumerate(layout["tiles"])}
    return cut, {k: float(info[k]) for k in ("psnr_bicubic", "psnr_model")}


@pytest.mark.slow
def test_train_test_and_demo_state_an_estimate_and_the_results_show_the_method(tmp_path, fixtures_dir):
    data = f"paths.sample_dir={tmp_path / 'sample'}"
    run = tmp_path / "train"
    r = run_cli(*TINY, data, f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("estimate: training: about") == 1 and out.count("estimate: test: about") == 1

    for scale in (2, 5):  # a comparison per scale, its PSNRs those of the tiles it shows
        path = run / "samples" / f"sample_x{scale}_compare.png"
        cut, psnr = tiles(path)
        assert cut["input"].shape == cut["ground truth"].shape
        assert psnr["psnr_model"] == pytest.approx(psnr_uint8(cut["model"], cut["ground truth"]), abs=0.05)
        assert psnr["psnr_bicubic"] == pytest.approx(psnr_uint8(cut["bicubic"], cut["ground truth"]), abs=0.05)
        assert psnr["psnr_bicubic"] > 20  # bicubic of a photo, not noise: the tiles line up with the ground truth
        events = b"".join(p.read_bytes() for p in (run / "tb").glob("events.*"))
        assert f"samples/sample_x{scale}_compare".encode() in events  # and in TensorBoard

    closing = r.stdout.strip().splitlines()[-6:]  # the last lines: where to look
    assert any(line == f"run folder: {run}" for line in closing)
    assert any("checkpoints/epoch-best.pth (best validation PSNR" in line for line in closing)
    assert any(f"resume={run} train.epochs=N" in line for line in closing)

    ckpt = run / "checkpoints" / "epoch-last.pth"
    r = run_cli("task=test", f"checkpoint={ckpt}", data, "scales=[2,5]", "device=cpu", f"hydra.run.dir={tmp_path / 't'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("estimate: test: about") == 1 and f"run folder: {tmp_path / 't'}" in r.stdout

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(src)
    r = run_cli("task=demo", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", f"input={src}",
                "size=[60,80]", "eval_bsize=600", f"output={tmp_path / 'o.png'}", "device=cpu",
                f"hydra.run.dir={tmp_path / 'd'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("estimate: demo: about") == 1  # 8 chunks of 600 pixels


def test_estimate_times_units_after_the_warm_up_and_says_it_once(monkeypatch, caplog):
    from liif.run import progress
    clock = iter([10.0, 13.0, 16.0])  # the timed span: 2 units in 3 s, then 1 more in 3 s
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    estimate = progress.Estimate("training", 100, "step", skip=1, measure=2)
    with caplog.at_level(logging.INFO, logger="liif.run.progress"):
        assert estimate.update() is None  # the warm-up step (compiles, caches): starts the clock
        assert estimate.update() is None
        assert estimate.update() == pytest.approx(97 * 1.5)  # 97 steps left at 1.5 s
        assert estimate.update() is None  # said once
    assert [r.getMessage() for r in caplog.records] == [
        "estimate: training: about 2 min for the 97 steps left (1.5 s per step, timed over 2)"]
    assert estimate.left_s() == pytest.approx(96 * 2.0)  # the mean rate so far: 3 steps in 6 s


def test_a_long_cpu_training_suggests_the_smoke_profile(caplog):
    from liif.training.trainer import LONG_ON_CPU_S, Trainer
    with caplog.at_level(logging.WARNING, logger="liif.training.trainer"):
        for device, seconds in (("cpu", LONG_ON_CPU_S - 1), ("cuda", 10 * LONG_ON_CPU_S), ("cpu", None)):
            Trainer.suggest_smoke_profile(types.SimpleNamespace(device=device), seconds)
        assert not caplog.records
        Trainer.suggest_smoke_profile(types.SimpleNamespace(device="cpu"), 2 * 3600)
    assert len(caplog.records) == 1 and "about 2.0 h" in caplog.records[0].getMessage()
    assert "profile=smoke" in caplog.records[0].getMessage()
