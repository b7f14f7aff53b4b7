"""`task=test` on a benchmark-layout folder writes metrics.json records that follow the
original test protocol, checked against an independent re-computation. The CLI's path after
Hydra's composition, in process."""
import json

import numpy as np
import pytest
from PIL import Image

import liif
from conftest import compose, run_task_with_overrides
from liif.coords import make_coord


def _photo(seed, h, w):
    from skimage import data
    img = data.astronaut() if seed == 0 else data.coffee()
    return np.ascontiguousarray(img[40:40 + h, 60:60 + w])


@pytest.fixture(scope="module")
def myset(tmp_path_factory):
    """benchmark/MySet/HR plus LR_bicubic/X2..X4 (made here with Pillow bicubic)."""
    root = tmp_path_factory.mktemp("data")
    hr_dir = root / "benchmark" / "MySet" / "HR"
    hr_dir.mkdir(parents=True)
    for i, (h, w) in enumerate([(48, 72), (50, 61)]):
        Image.fromarray(_photo(i, h, w)).save(hr_dir / f"img{i}.png")
    for s in (2, 3, 4):
        lr_dir = root / "benchmark" / "MySet" / "LR_bicubic" / f"X{s}"
        lr_dir.mkdir(parents=True)
        for i, p in enumerate(sorted(hr_dir.iterdir())):
            hr = Image.open(p)
            hr.resize((hr.width // s, hr.height // s), Image.BICUBIC).save(lr_dir / f"img{i}x{s}.png")
    return root


def expected_psnr(model, lr, hr, scale):
    """The original protocol written out again: crop the HR to LR*s, query every pixel,
    clamp, luma difference with the EDSR weights, shave `scale`, one MSE per image."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    hr = hr[:h, :w].astype(np.float32) / 255
    inp = ((lr.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
    cell = np.tile(np.array([2 / h, 2 / w], np.float32), (1, h * w, 1))
    pred = model.query(inp, make_coord((h, w))[None], cell)[0].reshape(h, w, 3)
    pred = np.clip(pred * 0.5 + 0.5, 0, 1)
    diff = ((pred - hr) * np.array([65.738, 129.057, 25.064]) / 256).sum(-1)[scale:-scale, scale:-scale]
    return -10 * np.log10(np.mean(diff ** 2))


@pytest.mark.slow
def test_benchmark_folder_by_name(myset, tmp_path, fixtures_dir):
    ckpt = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    run_dir = tmp_path / "run"
    status, err = run_task_with_overrides(compose("task=test", f"checkpoint={ckpt}", "dataset=benchmark", "dataset.name=MySet",
                                                  f"paths.data_dir={myset}", "scales=[3,6]", "device=cpu"),
                                          f"output_dir={run_dir}")
    assert status == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    records = {rec["scale"]: rec for rec in metrics["records"]}
    assert sorted(records) == [3, 6]  # one scale with LR files (X3), one without (x6)
    model = liif.load_model(ckpt, device="cpu")
    hr_dir = myset / "benchmark" / "MySet" / "HR"
    hrs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(hr_dir.iterdir())]
    for scale, rec in records.items():
        assert rec["dataset"] == "MySet" and rec["eval_type"] == f"benchmark-{scale}" and rec["n_images"] == 2
        if scale <= 4:  # the given LR files
            lr_dir = myset / "benchmark" / "MySet" / "LR_bicubic" / f"X{scale}"
            lrs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(lr_dir.iterdir())]
            assert rec["lr_source"] == "files"
        else:  # HR cropped to a multiple of s, then Pillow bicubic on 8-bit data
            lrs = []
            for hr in hrs:
                h, w = hr.shape[0] // scale, hr.shape[1] // scale
                lrs.append(np.asarray(Image.fromarray(hr[:h * scale, :w * scale]).resize((w, h), Image.BICUBIC)))
            assert rec["lr_source"] == "pillow-bicubic"
        want = np.mean([expected_psnr(model, lr, hr, scale) for lr, hr in zip(lrs, hrs)])
        assert abs(rec["psnr"] - want) < 1e-4, (scale, rec["psnr"], want)
        assert 0 < rec["ssim"] <= 1 and np.isfinite(rec["psnr_bicubic"])


def test_missing_benchmark_prints_the_expected_layout(tmp_path, fixtures_dir):
    status, err = run_task_with_overrides(compose("task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}",
                                                  "dataset=benchmark", "dataset.name=Nope", f"paths.data_dir={tmp_path}"),
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 2 and "Traceback" not in err
    assert "benchmark/Nope/HR" in err and "LR_bicubic" in err


def test_sigterm_during_a_test_run_is_recorded(myset, tmp_path, fixtures_dir, monkeypatch):
    import os
    import signal
    import time
    import liif.evaluation.evaluate
    from conftest import typed

    def sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2)  # the handler runs here
        raise AssertionError("SIGTERM did not interrupt the test run")

    def unhandled(signum, frame):  # if main() let SIGTERM through, fail instead of killing pytest
        raise AssertionError("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(liif.evaluation.evaluate, "evaluate", sigterm)
        cfg = typed("task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "dataset=benchmark",
                      "dataset.name=MySet", f"paths.data_dir={myset}", f"output_dir={tmp_path}", "device=cpu")
        with pytest.raises(SystemExit) as stopped:
            liif.evaluation.evaluate.main(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["error"] == "interrupted by SIGTERM"
