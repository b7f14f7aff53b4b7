"""Bad input through the real CLI: one clear line (or the expected layout), exit status 2,
no traceback; and a SIGTERM'd training run that resumes to the same losses.
docs/reliability.md lists the same cases."""
import json
import signal
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_cli, sigterm_after_first_checkpoint

pytestmark = pytest.mark.slow

TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=1", "train.max_steps_per_epoch=2",
        "train.batch_size=2", "train.inp_size=8", "train.sample_q=16", "dataset.val=null", "scales=[2]",
        "device=cpu", "framework.threads=1"]


def photo(path, size=(40, 40), mode="RGB", bits16=False):
    rng = np.random.default_rng(len(str(path)))
    img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    if bits16:
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
    else:
        img = img.convert(mode)
    img.save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        photo(d / f"{i}.png")
    return d


def fails_cleanly(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def train(tmp_path, *args):
    return run_cli(*TINY, f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}", *args)


def test_missing_data_folder(tmp_path):
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={tmp_path / 'nope'}"), "not found", "nope/*.png")


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={tmp_path / 'empty'}"), "no images")


def test_div2k_not_in_its_layout_prints_the_layout(tmp_path):
    fails_cleanly(train(tmp_path, "dataset=div2k"), "DIV2K/DIV2K_train_HR", "DIV2K_valid_LR_bicubic/X2")


def test_corrupt_image(tmp_path, folder):
    (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:60])
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}"), "1.png")


def test_non_image_file_is_an_error_or_skipped_by_setting(tmp_path, folder):
    (folder / "notes.txt").write_text("not an image")
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}"), "notes.txt")
    ok = train(tmp_path, "dataset=folder", f"dataset.path={folder}", "on_bad_file=skip")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "notes.txt" in ok.stderr  # the warning


def test_grey_rgba_palette_and_16bit_images_train_and_test(tmp_path):
    d = tmp_path / "modes"
    d.mkdir()
    photo(d / "grey.png", mode="L"), photo(d / "rgba.png", mode="RGBA"), photo(d / "pal.png", mode="P")
    photo(d / "deep.png", bits16=True)
    r = train(tmp_path, "dataset=folder", f"dataset.path={d}")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["records"][0]["n_images"] == 4


def test_image_smaller_than_the_training_crop(tmp_path, folder):
    photo(folder / "tiny.png", size=(20, 20))
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}", "train.inp_size=8", "scale.max=4"),
                  "tiny.png is 20x20", "32x32")


@pytest.mark.parametrize("args, fragment", [(["scale.min=0"], "impossible scale range"),
                                            (["scale.min=3", "scale.max=2"], "impossible scale range"),
                                            (["scales=[0]"], "positive integers")])
def test_impossible_scales(tmp_path, folder, args, fragment):
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}", *args), fragment)


def test_a_non_integer_test_scale_is_rejected_by_the_config_schema(tmp_path, folder):
    """scales is a list of ints in liif.config.RunConfig: Hydra names the value before any work."""
    r = train(tmp_path, "dataset=folder", f"dataset.path={folder}", "scales=[2.5]")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "scales[0]" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_hr_lr_count_and_size_mismatch(tmp_path, fixtures_dir):
    bench = tmp_path / "data" / "benchmark" / "Mine"
    (bench / "HR").mkdir(parents=True)
    (bench / "LR_bicubic" / "X2").mkdir(parents=True)
    for i in range(2):
        photo(bench / "HR" / f"{i}.png", size=(40, 40))
    photo(bench / "LR_bicubic" / "X2" / "0x2.png", size=(20, 20))
    ckpt = f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}"
    args = ["task=test", ckpt, "dataset=benchmark", "dataset.name=Mine", f"paths.data_dir={tmp_path / 'data'}", "scales=[2]"]
    fails_cleanly(run_cli(*args, f"hydra.run.dir={tmp_path / 'r1'}"), "1", "2")  # counts: 1 vs 2
    photo(bench / "LR_bicubic" / "X2" / "1x2.png", size=(13, 20))
    fails_cleanly(run_cli(*args, f"hydra.run.dir={tmp_path / 'r2'}"), "not a x2 pair")


def test_a_file_that_is_not_a_checkpoint(tmp_path, folder):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 100)
    fails_cleanly(run_cli("task=test", f"checkpoint={bad}", "dataset=folder", f"dataset.path={folder}",
                          f"hydra.run.dir={tmp_path / 'run'}"), "not a readable checkpoint")


def test_a_checkpoint_of_another_model(tmp_path, folder, fixtures_dir):
    metasr = fixtures_dir / "ckpt_edsr-baseline-metasr.pth"
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}", "model=edsr_baseline_liif",
                        f"checkpoint={metasr}"), "checkpoint 'metasr' on 'edsr-baseline'", "config 'liif'")


def test_unknown_framework_is_hydras_clear_error(tmp_path):
    r = run_cli("framework=tensorflow", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "framework/tensorflow" in r.stderr and "torch" in r.stderr  # lists the options


@pytest.mark.parametrize("device, fragment", [("cuda", "no CUDA GPU"), ("tpu", "unknown device")])
def test_unavailable_or_unknown_device(tmp_path, fixtures_dir, device, fragment):
    if device == "cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    src = photo(tmp_path / "in.png")
    fails_cleanly(run_cli("task=demo", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", f"input={src}",
                          "size=[8,8]", f"output={tmp_path / 'o.png'}", f"device={device}",
                          f"hydra.run.dir={tmp_path / 'run'}"), fragment)


def test_a_finished_run_directory_is_not_reused(tmp_path, folder):
    assert train(tmp_path, "dataset=folder", f"dataset.path={folder}").returncode == 0
    fails_cleanly(train(tmp_path, "dataset=folder", f"dataset.path={folder}"), "already holds a run", "resume=true")


def test_sigterm_mid_epoch_then_resume_gives_the_same_losses(tmp_path, folder):
    """SIGTERM a training subprocess in epoch 2, resume it, compare with an uninterrupted run."""
    args = [*TINY, "dataset=folder", f"dataset.path={folder}", "train.epochs=3", "train.max_steps_per_epoch=400", "dataset.train.repeat=300",
            "train.milestones=[2]"]
    full = run_cli(*args, f"hydra.run.dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-2000:]

    cut = tmp_path / "cut"
    returncode, err = sigterm_after_first_checkpoint(args, cut, cwd=ROOT)
    assert returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "resume=" in err
    interrupted = json.loads((cut / "metrics.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["train"]["epochs_done"] < 3
    import torch
    position = torch.load(cut / "checkpoints" / "epoch-last.pth", weights_only=True)["liif"]
    assert 0 < position["step_in_epoch"] < 400  # stopped mid-epoch, and the checkpoint knows where

    resumed = run_cli(*args, f"hydra.run.dir={cut}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    losses = lambda d: [row["loss"] for row in json.loads((d / "metrics.json").read_text())["train"]["history"]]  # noqa: E731
    assert losses(cut) == losses(tmp_path / "full")
    psnr = lambda d: [r["psnr"] for r in json.loads((d / "metrics.json").read_text())["records"]]  # noqa: E731
    assert psnr(cut) == psnr(tmp_path / "full")


def test_a_jittor_internal_failure_says_what_to_do(monkeypatch):
    """The CLI asks the run's backend whether an error is the framework's internal failure
    (liif.backends.is_internal_failure); only Jittor's backend says yes, and only once loaded."""
    import sys
    import types

    from liif import backends
    from liif.backends import jittor_setup
    from liif.cli.main import one_line
    internal = RuntimeError("[f op_compiler.cc:832] Check failed: member.size() <= var_num  Something wrong... "
                            "Could you please report this issue?")
    monkeypatch.delitem(sys.modules, "liif.backends.jittor", raising=False)
    assert not backends.is_internal_failure("jittor", internal)  # a framework never loaded has not failed
    # the loaded Jittor backend, without importing jittor here (its check is jittor_setup's)
    monkeypatch.setitem(sys.modules, "liif.backends.jittor",
                        types.SimpleNamespace(is_internal_failure=jittor_setup.is_internal_failure))
    assert "an internal failure of jittor" in one_line(internal, "jittor")
    assert "run the same command again, with resume=true" in one_line(internal, "jittor")
    assert one_line(internal, "torch") == str(internal)  # torch's backend: never an internal failure
    assert one_line(RuntimeError("no such folder: x"), "jittor") == "no such folder: x"
    assert one_line(KeyError("missing key 'a'")) == "missing key 'a'"  # not KeyError's quoted repr


def test_the_suites_rerun_is_for_jittor_internal_failures_only():
    """conftest runs a CLI command a second time only after a Jittor internal failure, and only once."""
    from conftest import once_more_on_jittor_internal_error
    calls = []

    def fake(stderr):
        @once_more_on_jittor_internal_error
        def run(*args):
            calls.append(args)
            return subprocess.CompletedProcess(args, 2, "", stderr)
        return run

    with pytest.warns(UserWarning, match="Jittor failed internally"):
        assert fake("error: ... Could you please report this issue?")("a").returncode == 2
    assert len(calls) == 2
    calls.clear()
    assert fake("error: no such folder")("a").returncode == 2
    assert len(calls) == 1
