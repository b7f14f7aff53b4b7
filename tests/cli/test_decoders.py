"""A decoder added through the decoder contract (liif/models/decoder.py) gets every capability from
the command line with no code of its own outside liif/models: LTE trained on the smoke profile, tested
with its family's cell protocol (recorded in metrics.json), and its checkpoint upscaling an image in tiles."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli


@pytest.mark.slow  # three CLI runs, ~11 s: the whole suite's, not the edit-test loop's
def test_lte_trains_tests_and_upscales_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    r = run_cli("model=edsr_baseline_lte", "profile=smoke", "framework.threads=1", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["model_spec"]["name"] == "lte"
    assert [(rec["scale"], rec["cell_clip"]) for rec in metrics["records"]] == [(2, 4), (12, 4)]  # LTE's protocol
    r = run_cli("model=edsr_baseline_lte", "profile=smoke", "framework.threads=1", "test.cell_clip=false",
                "task=test", f"checkpoint={run}/checkpoints/epoch-last.pth", f"hydra.run.dir={tmp_path / 'test'}")
    assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads((tmp_path / "test" / "metrics.json").read_text())["records"]
    assert [rec["cell_clip"] for rec in records] == [None, None]  # overridden: LIIF's protocol
    x2 = {rec["scale"]: rec["psnr"] for rec in records}[2]
    assert abs(x2 - metrics["records"][0]["psnr"]) < 1e-6  # within the training range the clip changes nothing
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out.png"
    r = run_cli("task=demo", f"checkpoint={run}/checkpoints/epoch-last.pth", f"input={image}", "size=[50,60]",
                f"output={out}", "infer.tile=8", f"hydra.run.dir={tmp_path / 'demo'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert Image.open(out).size == (60, 50)
