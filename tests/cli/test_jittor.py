"""framework=jittor: train, test and demo (the CLI's path after composition, in process; checkpoints
cross frameworks), and Ctrl-C on a real `python run.py framework=jittor` training."""
import importlib.util
import json

import pytest

from conftest import compose, noise_photos, run_task_with_overrides

if importlib.util.find_spec("jittor") is None:  # the CLI subprocesses import it (with liif's defaults)
    pytest.skip("jittor is not installed", allow_module_level=True)
pytestmark = [pytest.mark.jittor, pytest.mark.slow]

TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=2", "train.max_steps_per_epoch=2",
        "train.batch_size=2", "train.inp_size=16", "train.sample_q=64", "dataset.val.repeat=1", "scales=[2,5]",
        "device=cpu"]


def test_train_on_jittor_then_test_on_both_frameworks(tmp_path):
    data = f"paths.sample_dir={tmp_path / 'sample'}"
    test_set = f"dataset.test.0.hr={noise_photos(tmp_path / 'test')}"  # three 40x40 images, not the sample photos
    status, err = run_task_with_overrides(compose(*TINY, data, test_set, "framework=jittor"), f"output_dir={tmp_path / 'train'}")
    assert status == 0, err[-3000:]
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert trained["status"] == "ok" and trained["framework"] == "jittor" and len(trained["records"]) == 2
    ckpt = tmp_path / "train" / "checkpoints" / "epoch-last.pth"
    psnr = {}
    for framework in ("jittor", "torch"):
        status, err = run_task_with_overrides(compose("task=test", data, test_set, "scales=[2,5]", f"framework={framework}",
                                                      "device=cpu"), f"checkpoint={ckpt}", f"output_dir={tmp_path / framework}")
        assert status == 0, err[-3000:]
        psnr[framework] = [rec["psnr"] for rec in json.loads((tmp_path / framework / "metrics.json").read_text())["records"]]
    assert psnr["jittor"] == pytest.approx(psnr["torch"], abs=1e-4)
    assert psnr["jittor"] == pytest.approx([rec["psnr"] for rec in trained["records"]], abs=1e-4)


def test_demo_on_jittor(tmp_path, fixtures_dir):
    from PIL import Image
    src = tmp_path / "in.png"
    Image.new("RGB", (11, 7), (200, 30, 90)).save(src)
    status, err = run_task_with_overrides(compose("task=demo", "framework=jittor", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}",
                                                  f"input={src}", "size=[15,40]"),
                                          f"output={tmp_path / 'out.png'}", f"output_dir={tmp_path / 'run'}")
    assert status == 0, err[-3000:]
    assert Image.open(tmp_path / "out.png").size == (40, 15)


def test_ctrl_c_on_jittor_is_acknowledged_once_and_stops_cleanly(tmp_path):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group, Jittor's kernel-compile
    workers included. Before the fix the workers died of it and Jittor's SIGCHLD handler ended the
    run at once ('Caught SIGCHLD ... quick exit'), without a checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    run = tmp_path / "run"
    args = [*TINY, "train.epochs=50", "train.max_steps_per_epoch=20", "dataset.val=null", "scales=[2]",
            f"paths.sample_dir={tmp_path / 'sample'}", "framework=jittor", f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "epoch-last.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "SIGCHLD" not in err and "quick exit" not in err and "Traceback" not in err, err[-3000:]
    text = out + err
    assert text.count("SIGINT received: stopping after this step, saving a checkpoint") == 1, text[-3000:]
    assert text.count(f"interrupted by SIGINT: a resumable checkpoint is in {run / 'checkpoints'}") == 1
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
