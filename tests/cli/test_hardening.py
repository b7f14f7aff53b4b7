"""Issue 11's classes 3-7 and the project's own attack cases (the tables of docs/reliability.md),
mostly in process: `run_task_with_overrides` is the CLI's path after Hydra's composition, so each
case costs a model load, not an interpreter start. Every refusal is checked for the contract:
exit 2, exactly one line on stderr, no traceback, nothing changed in the workspace."""
import errno
import functools
import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, ROOT, compose, run_cli_inprocess, run_task_with_overrides, tree_state
from liif.inference import memory
from liif.io import durable, outputs
from liif.errors import LiifError, NotEnoughMemory, OutputError

def _ckpt(name="edsr-baseline-liif"):
    return str(FIXTURES / f"ckpt_{name}.pth")


def noise_png(path, h=12, w=16, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def assert_refused(status, err, match):
    """Refused as the CLI does: a value of the wrong type by the typed config while Hydra composes
    (Hydra's message, exit 1, liif/config.py), any other bad value by the task (one line, exit 2)."""
    if status == 1 and err.startswith("Error merging override"):
        assert "Traceback" not in err
        return
    assert_one_line_error(status, err, match)


def assert_one_line_error(status, err, match):
    assert status == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and match in err, err


@pytest.fixture(scope="module")
def demo_cfg():
    return compose("task=demo", f"checkpoint={_ckpt()}", "size=[20,30]", "device=cpu", "framework.threads=1")


@pytest.fixture
def work(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    noise_png(w / "in.png")
    return w


# ---- item 4/5: output paths, checked before any work -------------------------------------------------
def _fifo(w):
    os.mkfifo(w / "fifo.png")
    return str(w / "fifo.png")


def _socket(w):
    """A special file of our own: a test must never aim a possibly broken writer at /dev/null (the
    code before this fix, run as root, replaced the system's /dev/null with a regular file)."""
    import socket
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(w / "sock.png"))
    sock.close()
    return str(w / "sock.png")


def _symlink(w):
    os.symlink(w / "in.png", w / "link.png")
    return str(w / "link.png")


def _read_only_file(w):
    noise_png(w / "ro.png", seed=1)
    os.chmod(w / "ro.png", 0o444)
    return str(w / "ro.png")


def _hard_link(w):
    os.link(w / "in.png", w / "hard.png")
    return str(w / "hard.png")


def _under_a_file(w):
    return str(w / "in.png" / "out.png")


OUTPUT_CASES = {  # name: (output= as a function of the workspace, what the one line says)
    "the input itself": (lambda w: str(w / "in.png"), "is the input"),
    "the input, spelled another way": (lambda w: f"{w}/../w/./in.png", "is the input"),
    "a hard link to the input": (_hard_link, "is the input"),
    "the checkpoint": (lambda w: _copy_ckpt(w, "model.png"), "is the input"),
    "a folder": (lambda w: str(w), "is a folder"),
    "a trailing slash": (lambda w: f"{w}/new/", "names a folder"),
    "an empty value": (lambda w: "", "output= is empty"),
    "a path under a file": (_under_a_file, "which is a file"),
    "a socket": (_socket, "special file (a socket)"),
    "a fifo": (_fifo, "special file (a fifo)"),
    "a symlink": (_symlink, "is a symbolic link"),
    "a read-only file": (_read_only_file, "read-only"),
    "an unknown extension": (lambda w: str(w / "out.xyz"), "extension '.xyz'"),
    "no extension": (lambda w: str(w / "out"), "extension '(none)'"),
    "a name longer than the file system allows": (lambda w: str(w / ("x" * 300 + ".png")), "longer than the file system"),
}


def _copy_ckpt(w, name):
    shutil.copy(_ckpt(), w / name)
    return str(w / name)


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_a_bad_output_is_refused_in_one_line_and_nothing_changes(demo_cfg, work, case):
    make_output, message = OUTPUT_CASES[case]
    output = make_output(work)
    checkpoint = str(work / "model.png") if case == "the checkpoint" else _ckpt()
    before = tree_state(work)
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"output='{output}'",
                                          f"checkpoint={checkpoint}")
    assert_one_line_error(status, err, message)
    assert tree_state(work) == before


def test_a_device_is_never_an_output():
    """Checked on the path alone: nothing is run that could write to the device."""
    for device in ("/dev/null", "/dev/zero"):
        with pytest.raises(OutputError, match=f"output={device} is a special file \\(a character device\\)"):
            outputs.check_output_path(device)


def test_a_read_only_folder_is_refused(demo_cfg, work, monkeypatch):
    folder = work / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    if os.geteuid() == 0:  # root may write anywhere: make access() answer as for anyone else
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(folder) else real(p, m))
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"output={folder / 'o.png'}")
    assert_one_line_error(status, err, "is not writable")
    assert os.listdir(folder) == []


@pytest.mark.parametrize("size, fmt, message", [("[20000,2]", "webp", "WEBP images are at most 16383"),
                                                ("[2,70000]", "jpg", "JPEG images are at most 65500")])
def test_an_output_larger_than_its_format_allows_is_refused_before_the_work(demo_cfg, work, size, fmt, message):
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"size={size}", f"output={work / ('o.' + fmt)}")
    assert_one_line_error(status, err, message)
    assert sorted(os.listdir(work)) == ["in.png"]


def test_an_absurd_output_size_is_checked_against_memory_before_anything_is_allocated(demo_cfg, work, monkeypatch):
    import liif.inference.demo
    monkeypatch.setattr(liif.inference.demo, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", "size=[10000000,10000000]",
                                          f"output={work / 'o.png'}")
    assert_one_line_error(status, err, "needs about 818.5 TB of memory")  # 3 copies of 1e14 pixels x 3 bytes = 9e14 B


def test_memory_check_refuses_what_cannot_fit():
    available = memory.available_bytes()
    assert available is not None and available > 1 << 20  # Linux: MemAvailable, at least a megabyte
    memory.check_fits(1 << 20, "a megabyte")
    with pytest.raises(NotEnoughMemory, match=r"a petabyte needs about 1024\.0 TB .* available; lower it"):
        memory.check_fits(1 << 50, "a petabyte", advice="lower it")


# ---- item 5: input files the demo must not read --------------------------------------------------------
@pytest.mark.parametrize("make_input, message", [
    (lambda w: str(w), "is a folder"),
    (_fifo, "not a regular file"),  # would block forever on open()
    (lambda w: "/dev/zero", "not a regular file"),  # would be read until memory runs out
    (lambda w: str(w / "missing.png"), "input image not found"),
], ids=["folder", "fifo", "dev-zero", "missing"])
def test_an_input_that_is_not_a_regular_file_is_refused(demo_cfg, work, make_input, message):
    status, err = run_task_with_overrides(demo_cfg, f"input={make_input(work)}", f"output={work / 'o.png'}")
    assert_one_line_error(status, err, message)
    assert not (work / "o.png").exists()


# ---- item 7: formats, modes -----------------------------------------------------------------------------
MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".JPEG": b"\xff\xd8\xff", ".bmp": b"BM", ".webp": b"RIFF",
         ".tif": (b"II*\x00", b"MM\x00*")}


@pytest.mark.parametrize("ext", list(MAGIC))
def test_the_output_format_follows_the_extension(demo_cfg, work, ext):
    out = work / f"out{ext}"
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"output={out}")
    assert status == 0, err
    head = out.read_bytes()[:4]
    assert head.startswith(MAGIC[ext]) if isinstance(MAGIC[ext], bytes) else head in MAGIC[ext]
    with Image.open(out) as im:
        assert im.size == (30, 20) and im.mode == "RGB"
    assert sorted(os.listdir(work)) == sorted(["in.png", out.name])  # no temporary file left


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    from liif.models import checkpoint
    from liif.data.image_folder import ImageFolder
    from liif.run.rundir import write_json
    umask(mask)
    write_json(str(tmp_path / "metrics.json"), {"status": "ok"})
    outputs.write_image(np.zeros((4, 4, 3), np.uint8), str(tmp_path / "o.png"))
    checkpoint.write(checkpoint.envelope({"name": "x"}, {"w": np.zeros(3, np.float32)}), str(tmp_path / "c.pth"))
    (tmp_path / "imgs").mkdir()
    noise_png(tmp_path / "imgs" / "a.png")
    ImageFolder(tmp_path / "imgs", cache="bin")
    # a training's epoch end: epoch-last.pth, then its copies epoch-N.pth and epoch-best.pth, and history.csv
    from liif.run import recovery
    checkpoint.write(checkpoint.envelope({"name": "x"}, {"w": np.zeros(3, np.float32)}), str(tmp_path / "checkpoints" / "epoch-last.pth"))
    recovery.derive_from_last(str(tmp_path), [{"epoch": 2, "loss": 1.0, "lr": 1e-4, "val_psnr": 20.0, "seconds": 1.0}], 2)
    for path in ("metrics.json", "o.png", "c.pth", "_bin_imgs/a.png.npy", "_bin_imgs/a.png.npy.stamp", "history.csv",
                 "checkpoints/epoch-last.pth", "checkpoints/epoch-2.pth", "checkpoints/epoch-best.pth"):
        assert stat.S_IMODE(os.stat(tmp_path / path).st_mode) == mode, path


# ---- item 4/6: a full disk ------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_writing_the_output_is_one_line_and_leaves_no_temp_file(demo_cfg, work, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", _enospc)
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"output={work / 'o.png'}")
    assert_one_line_error(status, err, "no space left on the device")
    assert sorted(os.listdir(work)) == ["in.png"]


def test_a_write_failure_on_a_full_device_keeps_the_previous_file(tmp_path):
    """/dev/full: every write fails with ENOSPC. The temp file lives beside the output, so here the
    failure is made by the writer; the earlier version of the file stays, no temp file remains."""
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def write_to_dev_full(f):
        with open("/dev/full", "wb", buffering=0) as full:
            full.write(b"x")
    with pytest.raises(OutputError, match="no space left on the device to write"):
        durable.write_atomic(str(target), write_to_dev_full)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_checkpoint_on_a_full_disk_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from liif.models import checkpoint
    from liif.io import torchfile
    obj = checkpoint.envelope({"name": "x"}, {"w": np.zeros(1000, np.float32)})
    real_save = torchfile.save
    monkeypatch.setattr(torchfile, "save", lambda o, file: real_save(o, open("/dev/full", "wb")))  # the kernel's ENOSPC
    (tmp_path / "c.pth").write_bytes(b"the previous checkpoint")
    with pytest.raises(OutputError, match=r"no space left on the device to write .*c\.pth; free some space"):
        checkpoint.write(obj, str(tmp_path / "c.pth"))
    assert os.listdir(tmp_path) == ["c.pth"] and (tmp_path / "c.pth").read_bytes() == b"the previous checkpoint"


TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.batch_size=2", "train.inp_size=16",
        "train.sample_q=64", "train.max_steps_per_epoch=2", "train.epochs=3", "train.epoch_val=1",
        "dataset.val.repeat=1", "framework.threads=1", "device=cpu", "scales=[2]"]


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_resume_gives_the_uninterrupted_run(tmp_path, monkeypatch, capfd):
    from liif.io import torchfile
    sample = f"paths.sample_dir={tmp_path / 'sample'}"
    base = compose("task=train", sample, *TINY)
    status, err = run_task_with_overrides(base, f"output_dir={tmp_path / 'full'}")
    assert status == 0, err
    real_save = torchfile.save

    def full_from_epoch_2(obj, file):
        if obj["epoch"] >= 2:  # every checkpoint after epoch 1 finds the disk full
            with open("/dev/full", "wb") as full:
                return real_save(obj, full)
        real_save(obj, file)
    monkeypatch.setattr(torchfile, "save", full_from_epoch_2)
    capfd.readouterr()
    status, err = run_task_with_overrides(base, f"output_dir={tmp_path / 'cut'}")
    assert_one_line_error(status, err, f"no space left on the device to write {tmp_path / 'cut'}/checkpoints/")
    assert f"continue with resume={tmp_path / 'cut'}" in err
    assert "Traceback" not in capfd.readouterr().err  # no TensorBoard thread traceback either
    assert not [n for n in os.listdir(tmp_path / "cut" / "checkpoints") if n.startswith(".tmp")]
    monkeypatch.setattr(torchfile, "save", real_save)
    status, err = run_task_with_overrides(base, f"output_dir={tmp_path / 'cut'}", "resume=true")
    assert status == 0, err
    full, cut = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "cut"))
    assert [h["loss"] for h in cut["train"]["history"]] == [h["loss"] for h in full["train"]["history"]]
    assert [r["psnr"] for r in cut["records"]] == [r["psnr"] for r in full["records"]]


def test_tensorboard_failures_stop_the_logging_with_one_warning_never_a_traceback(tmp_path, monkeypatch, caplog):
    from liif.run.tblog import open_writer
    (tmp_path / "tb").write_text("a file where the folder should be")
    assert open_writer(str(tmp_path / "tb")) is None
    writer = open_writer(str(tmp_path / "ok"))
    monkeypatch.setattr(writer._writer._file, "write_event", _enospc)  # the event file: the disk is full
    writer.add_scalar("loss", 1.0, 1)
    writer.flush()
    writer.add_scalar("loss", 2.0, 2)
    writer.close()
    assert writer.failed
    assert [r.message for r in caplog.records if r.message.startswith("TensorBoard")] == [
        "TensorBoard logging stopped: OSError: [Errno 28] No space left on device"]


# ---- item 3: nothing reports ok on garbage --------------------------------------------------------------
@pytest.mark.parametrize("bsize", ["0", "-1", "2.5", "abc", "true"])
def test_a_query_batch_that_is_not_a_positive_integer_is_refused(demo_cfg, work, bsize):
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"eval_bsize={bsize}",
                                          f"output={work / 'o.png'}")
    assert_refused(status, err, "must be a positive integer")  # the typed config's check, or Model's own


def test_the_api_never_returns_an_uninitialised_buffer():
    from liif import load_model
    model = load_model(_ckpt(), device="cpu")
    inp, coord, cell = np.zeros((1, 3, 4, 4)), np.zeros((1, 5, 2)), np.full((1, 5, 2), 0.1)
    for bsize in (0, -3, 1.5, None, True):
        with pytest.raises(LiifError, match="positive integer"):
            model.query(inp, coord, cell, bsize=bsize)
        with pytest.raises(LiifError, match="positive integer"):
            model.upscale(np.zeros((4, 4, 3), np.uint8), (8, 8), bsize=bsize)


@pytest.fixture(scope="module")
def nan_ckpt(tmp_path_factory):
    import torch
    ckpt = torch.load(_ckpt(), map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["model"]["sd"] if k.endswith("weight"))
    ckpt["model"]["sd"][key][0].view(-1)[0] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "nan.pth"
    torch.save(ckpt, path)
    return str(path), key


def test_non_finite_weights_stop_the_demo_instead_of_a_black_image(demo_cfg, work, nan_ckpt):
    path, key = nan_ckpt
    status, err = run_task_with_overrides(demo_cfg, f"checkpoint={path}", f"input={work / 'in.png'}",
                                          f"output={work / 'o.png'}")
    assert_one_line_error(status, err, f"holds non-finite weights (nan or inf in '{key}')")
    assert not (work / "o.png").exists()


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("testset")
    for i in range(2):
        noise_png(folder / f"{i}.png", 24, 24, seed=i)
    return folder


@functools.lru_cache(maxsize=None)
def make_test_cfg(images, *extra):
    """`task=test` on a folder, composed once per folder and settings (read only: run_task_with_overrides copies it)."""
    return compose("task=test", "dataset=folder", f"dataset.path={images}", "scales=[2]", "device=cpu",
                   "framework.threads=1", *extra)




def test_non_finite_weights_fail_the_test_run(test_images, nan_ckpt, tmp_path):
    status, err = run_task_with_overrides(make_test_cfg(test_images), f"checkpoint={nan_ckpt[0]}", f"output_dir={tmp_path}")
    assert_one_line_error(status, err, "non-finite weights")
    metrics = tmp_path / "metrics.json"
    assert not metrics.exists() or json.loads(metrics.read_text())["status"] != "ok"


def test_non_finite_predictions_fail_the_test_run(test_images, tmp_path, monkeypatch):
    from liif.inference.api import Model
    monkeypatch.setattr(Model, "query", lambda self, inp, coord, cell, bsize=1, **tiling: np.full(coord.shape[:2] + (3,), np.nan))
    status, err = run_task_with_overrides(make_test_cfg(test_images), f"checkpoint={_ckpt()}", f"output_dir={tmp_path}")
    assert_one_line_error(status, err, "the model predicts non-finite values (nan or inf) for image 1")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"
    assert not (tmp_path / "samples").exists()  # no black sample image


@pytest.mark.slow
def test_testing_a_metasr_checkpoint_labels_the_run_with_the_checkpoints_model(test_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run folder gets its default name, under ./outputs
    status, out, err = run_cli_inprocess("task=test", f"checkpoint={_ckpt('edsr-baseline-metasr')}", "dataset=folder",
                                         f"dataset.path={test_images}", "scales=[2]", "device=cpu", "framework.threads=1")
    assert status == 0, err
    (run_dir,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert run_dir.name.endswith("_test_edsr_baseline_metasr_torch"), run_dir.name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "edsr_baseline_metasr" and metrics["run_name"] == "edsr_baseline_metasr"


@pytest.mark.slow
@pytest.mark.parametrize("preset", importlib.import_module("liif.models.presets").names())
def test_every_model_preset_is_named_back_from_its_spec(preset):
    """What the label of a checkpoint's run relies on: the spec of preset P is named P."""
    from omegaconf import OmegaConf
    from liif.run.labels import model_label, preset_name
    spec = OmegaConf.to_container(compose(f"model={preset}").model, resolve=True)
    assert preset_name(spec) == preset
    assert model_label("edsr_baseline_liif", spec, compose().model) == preset  # what test/demo report


@pytest.mark.parametrize("name", ["liif", "liif-c", "liif-u", "liif-e", "liif-d", "metasr"])
def test_the_original_checkpoints_are_labelled_as_their_presets(name):
    from liif.run.labels import checkpoint_spec, preset_name
    spec = checkpoint_spec(_ckpt(f"edsr-baseline-{name}"))
    assert preset_name(spec) == {"liif": "edsr_baseline_liif", "metasr": "edsr_baseline_metasr"}.get(
        name, "edsr_baseline_" + name.replace("-", "_"))


@pytest.fixture(scope="module")
def train_cfg(tmp_path_factory):
    return compose("task=train", f"paths.sample_dir={tmp_path_factory.mktemp('data') / 'sample'}", *TINY)


@pytest.mark.parametrize("setting", ["dataset.train.repeat=0", "dataset.train.repeat=-2", "dataset.train.repeat=abc",
                                     "dataset.val.repeat=0", "dataset.train.first_k=0", "dataset.train.first_k=1.5",
                                     "dataset.train.repeat=true"])
def test_a_data_count_that_is_not_a_positive_integer_is_one_line_before_training(train_cfg, tmp_path, setting):
    """repeat=0 made an empty training set: nothing trained, status ok."""
    status, err = run_task_with_overrides(train_cfg, f"output_dir={tmp_path / 'run'}", setting)
    name = setting.split("=")[0].rsplit(".", 1)[1]
    assert_refused(status, err, f"{name}=")
    assert not list((tmp_path / "run").glob("checkpoints/*.pth"))


# ---- item 7: EXIF, the image cache -----------------------------------------------------------------------
DISPLAYED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
             8: lambda a: np.rot90(a, 1)}  # the EXIF standard's 8 orientations, as the viewer shows them


@pytest.mark.parametrize("orientation", list(DISPLAYED))
def test_exif_orientation_is_applied_when_reading(tmp_path, orientation):
    from liif.data.image_folder import image_size, read_image
    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "p.png", exif=exif)
    shown = DISPLAYED[orientation](stored)
    np.testing.assert_array_equal(read_image(str(tmp_path / "p.png")), shown)
    assert image_size(str(tmp_path / "p.png")) == shown.shape[:2]  # the crop checks see the same size


def test_a_phone_photo_comes_out_upright_and_unstretched(demo_cfg, tmp_path, monkeypatch):
    """A portrait JPEG stored landscape with orientation 6: the model is given the portrait."""
    from liif.inference.api import Model
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # the left half white: the top half once turned upright
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    seen, real = [], Model.upscale
    monkeypatch.setattr(Model, "upscale", lambda self, image, size, bsize, **kw: seen.append(image) or real(self, image, size, bsize, **kw))
    status, err = run_task_with_overrides(demo_cfg, f"input={tmp_path / 'phone.jpg'}", "size=[80,40]",
                                          f"output={tmp_path / 'o.png'}")
    assert status == 0, err
    assert seen[0].shape == (40, 20, 3) and seen[0][:20].mean() > 250 and seen[0][20:].mean() < 5
    assert Image.open(tmp_path / "o.png").size == (40, 80)


def test_a_malformed_exif_block_still_reads_the_pixels(tmp_path):
    from liif.data.image_folder import read_image
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), pixels)


def _bin_folder(tmp_path):
    from liif.data.image_folder import ImageFolder
    root = tmp_path / "imgs"
    root.mkdir(exist_ok=True)
    if not (root / "a.png").exists():
        noise_png(root / "a.png", 6, 8, seed=1)
    return ImageFolder(root, cache="bin"), root / "a.png", tmp_path / "_bin_imgs" / "a.png.npy"


def test_bin_cache_sees_an_edit_that_keeps_the_modification_time(tmp_path):
    _, image, _ = _bin_folder(tmp_path)
    st = os.stat(image)
    noise_png(image, 6, 8, seed=2)  # new pixels, same size ...
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the old time (cp -p, rsync -t, a same-second edit)
    folder, _, _ = _bin_folder(tmp_path)
    np.testing.assert_array_equal(folder[0], np.asarray(Image.open(image)))


@pytest.mark.parametrize("damage", ["truncated", "wrong shape", "object array", "not npy", "stamp missing"])
def test_a_damaged_bin_cache_file_is_rebuilt_not_trusted(tmp_path, damage):
    folder, image, npy = _bin_folder(tmp_path)
    if damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:-10])
    elif damage == "wrong shape":
        np.save(npy, np.zeros((3, 3, 3), np.uint8))
    elif damage == "object array":
        np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "not npy":
        npy.write_bytes(b"garbage")
    else:
        os.remove(str(npy) + ".stamp")
    for f in (npy, str(npy) + ".stamp"):
        if os.path.exists(f):
            os.utime(f, (os.stat(image).st_mtime + 100,) * 2)  # newer than the image: mtime alone would trust it
    folder, _, _ = _bin_folder(tmp_path)
    np.testing.assert_array_equal(folder[0], np.asarray(Image.open(image)))


def test_bin_cache_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "_bin_imgs").write_text("not a folder")
    with pytest.raises(OutputError, match="_bin_imgs is a file, not a folder"):
        _bin_folder(tmp_path)


def test_a_full_disk_while_building_the_bin_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "save", _enospc)
    with pytest.raises(OutputError, match="no space left on the device to write .*a.png.npy"):
        _bin_folder(tmp_path)
    assert os.listdir(tmp_path / "_bin_imgs") == []


# ---- test sets, samples, report -------------------------------------------------------------------------
@pytest.mark.parametrize("size, scale", [(1, 4), (24, 100)])
def test_an_image_smaller_than_the_scale_is_one_line(tmp_path, size, scale):
    (tmp_path / "imgs").mkdir()
    noise_png(tmp_path / "imgs" / "small.png", size, size)
    status, err = run_task_with_overrides(make_test_cfg(tmp_path / "imgs", f"checkpoint={_ckpt()}"), f"scales=[{scale}]",
                                          f"output_dir={tmp_path / 'run'}")
    assert_one_line_error(status, err, f"small.png is {size}x{size}, smaller than the scale x{scale}")


def test_an_image_smaller_than_ssims_window_has_no_ssim_and_says_so(tmp_path, caplog):
    """SSIM's Gaussian window is 11x11 (sigma 1.5): on a smaller image (after the protocol's shave) it is
    not defined, and scikit-image's ValueError was a traceback that ended the test. Now that set's SSIM
    is null in metrics.json and '–' in the table, with a warning naming the image; PSNR is measured."""
    (tmp_path / "imgs").mkdir()
    noise_png(tmp_path / "imgs" / "a.png", 24, 24)
    noise_png(tmp_path / "imgs" / "b_small.png", 10, 16, seed=1)
    status, err = run_task_with_overrides(make_test_cfg(tmp_path / "imgs", f"checkpoint={_ckpt()}"), "scales=[2]",
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 0, err
    (record,) = json.loads((tmp_path / "run" / "metrics.json").read_text())["records"]
    assert record["ssim"] is None and np.isfinite(record["psnr"]) and record["n_images"] == 2
    assert any("SSIM is not defined for folder x2: image 2 is 10x16" in r.getMessage() and "11x11" in r.getMessage()
               for r in caplog.records), caplog.text


def test_an_image_the_protocols_shave_leaves_nothing_of_is_one_line(tmp_path):
    """div2k-2 shaves 2 + 6 pixels from each border: of a 16x16 image nothing is left, and its PSNR was
    NaN (the mean of no pixels), reported as a result. Checked from the headers, before the test; a
    24x24 image keeps 8x8 pixels: its PSNR is measured, its SSIM is not defined (smaller than the window)."""
    (tmp_path / "imgs").mkdir()
    noise_png(tmp_path / "imgs" / "a.png", 24, 24)
    noise_png(tmp_path / "imgs" / "b.png", 16, 30, seed=1)
    cfg = make_test_cfg(tmp_path / "imgs", f"checkpoint={_ckpt()}", "dataset.test.0.protocol=div2k")
    status, err = run_task_with_overrides(cfg, "scales=[2]", f"output_dir={tmp_path / 'run'}")
    assert_one_line_error(status, err, "b.png is 16x30: the div2k-2 protocol shaves 8 pixels from each border, which "
                                       "leaves nothing to measure")
    assert not (tmp_path / "run" / "samples").exists()
    os.remove(tmp_path / "imgs" / "b.png")
    status, err = run_task_with_overrides(cfg, "scales=[2]", f"output_dir={tmp_path / 'run2'}")
    assert status == 0, err
    (record,) = json.loads((tmp_path / "run2" / "metrics.json").read_text())["records"]
    assert np.isfinite(record["psnr"]) and record["ssim"] is None


@pytest.mark.parametrize("task", ["test", "demo"])
def test_an_image_past_pillows_pixel_limit_is_too_large_not_unreadable(tmp_path, task):
    """A valid header of 20000 x 20000 pixels: Pillow refuses to decode it (a decompression bomb); the
    test set's size check read it with a traceback, the demo said 'cannot read image'."""
    from serve_helpers import png_header
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "huge.png").write_bytes(png_header(20000, 20000))
    if task == "test":
        status, err = run_task_with_overrides(make_test_cfg(tmp_path / "imgs", f"checkpoint={_ckpt()}"),
                                              f"output_dir={tmp_path / 'run'}")
    else:
        status, err = run_task_with_overrides(compose("task=demo", f"checkpoint={_ckpt()}", "size=[20,30]", "device=cpu"),
                                              f"input={tmp_path / 'imgs' / 'huge.png'}", f"output={tmp_path / 'out.png'}")
    assert_one_line_error(status, err, "huge.png has more than 178,956,970 pixels, more than Pillow decodes")


def test_a_set_name_cannot_write_its_sample_outside_the_run(test_images, tmp_path):
    run = tmp_path / "a" / "b" / "run"
    status, err = run_task_with_overrides(make_test_cfg(test_images, f"checkpoint={_ckpt()}"), f"output_dir={run}",
                                          "dataset.test.0.name=../../escaped")
    assert status == 0, err
    samples = os.listdir(run / "samples")  # the sample and its comparison image
    assert any(s.endswith("escaped_x2.png") for s in samples) and all("/" not in s for s in samples)
    assert sorted(os.listdir(tmp_path / "a")) == ["b"] and sorted(os.listdir(tmp_path / "a" / "b")) == ["run"]


def test_report_on_a_folder_without_runs_writes_nothing(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    status, err = run_task_with_overrides(compose("task=report"), f"dir={tmp_path / 'mine'}")
    assert_one_line_error(status, err, "no runs in")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


@pytest.mark.parametrize("metrics", [[1, 2], {"status": "ok", "paper": "table1"}, {"status": "ok", "train": []},
                                     {"status": "ok", "records": "x"}, {"status": "ok", "records": ["x"]},
                                     {"status": "ok", "records": [{"psnr": "high", "scale": 2}]},
                                     {"status": "ok", "train": {"history": [3]}}, {"status": "ok", "wall_time_s": "abc"},
                                     {"status": "ok", "seed": [1]}, {"status": "ok", "framework": {"a": 1}},
                                     {"status": "ok", "records": [{"psnr": 1.0, "scale": [2]}]},
                                     {"status": "ok", "records": [{"psnr": 1.0, "scale": 2, "dataset": {"a": 1}}]},
                                     {"status": "ok", "paper": {"table": 3, "row": ["a"]}},
                                     {"status": "ok", "paper": {"table": {"a": 1}, "row": "x"}},
                                     {"status": "ok", "train": {"history": [{"epoch": 1, "loss": "x"}]}}],
                         ids=["list", "paper-str", "train-list", "records-str", "record-str", "psnr-str", "history-int",
                              "wall-str", "seed-list", "framework-dict", "scale-list", "dataset-dict", "row-list",
                              "table-dict", "loss-str"])
def test_a_malformed_metrics_json_never_breaks_the_report(tmp_path, metrics):
    """A field of the wrong JSON type is dropped (liif.run.record), nested fields included; the run stays listed."""
    from liif.report import write
    for name, m in (("0_bad", metrics), ("1_good", {"status": "ok", "model": "m", "records": [{"psnr": 20.0, "scale": 2}]})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    write([str(tmp_path)], plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "| 0_bad |" in md and "| 1_good |" in md
    assert "20.0" in (tmp_path / "report.csv").read_text()


def test_a_record_without_bicubic_and_names_with_pipes_keep_the_report_whole(tmp_path):
    from liif.report import write
    (tmp_path / "0_a|b").mkdir()
    (tmp_path / "0_a|b" / "metrics.json").write_text(json.dumps(
        {"status": "ok", "framework": "torch", "paper": {"table": 3, "row": "LIIF"},
         "records": [{"psnr": 20.0, "scale": 2, "dataset": "x|y"}]}))
    (tmp_path / "1_c").mkdir()
    (tmp_path / "1_c" / "metrics.json").write_text(json.dumps(
        {"status": "ok", "framework": "torch", "records": [{"psnr": 21.0, "scale": 2, "dataset": "x|y"}]}))
    write([str(tmp_path)], plots=False)
    md = (tmp_path / "report.md").read_text()
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(len(line.replace("\\|", "").split("|")))
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 3 and all(len(set(t)) == 1 for t in tables), tables  # no row split by a '|'
    assert "0_a\\|b" in md and "x\\|y" in md


def test_report_out_under_a_file_is_one_line(tmp_path, capsys):
    from liif.report import cli
    (tmp_path / "0_run").mkdir()
    (tmp_path / "0_run" / "metrics.json").write_text(json.dumps({"status": "ok"}))
    (tmp_path / "afile").write_text("x")
    status = cli([str(tmp_path), "--out", str(tmp_path / "afile"), "--no-plots"])  # `python -m liif.report ...`
    assert status == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot write {tmp_path}/afile/report.md: {tmp_path}/afile is a file, not a folder"]


# ---- signals, pipes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_demo_is_one_line_and_leaves_no_file(demo_cfg, work, monkeypatch, sig):
    from liif.inference.api import Model
    monkeypatch.setattr(Model, "upscale", lambda *a, **k: os.kill(os.getpid(), sig) or pytest.fail("not stopped"))
    status, err = run_task_with_overrides(demo_cfg, f"input={work / 'in.png'}", f"output={work / 'o.png'}")
    assert status == 128 + sig
    assert err.strip().splitlines() == [f"interrupted by {sig.name}: nothing was written to {work / 'o.png'}"]
    assert sorted(os.listdir(work)) == ["in.png"]


def test_a_folder_where_metrics_json_goes_is_one_line(test_images, tmp_path):
    (tmp_path / "metrics.json").mkdir()
    status, err = run_task_with_overrides(make_test_cfg(test_images, f"checkpoint={_ckpt()}"), f"output_dir={tmp_path}")
    assert_one_line_error(status, err, f"cannot write {tmp_path / 'metrics.json'}: Is a directory")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_a_closed_pipe_on_stdout_ends_the_table_quietly():
    """`python run.py task=test ... | head -1`: the reader goes away while the table is printed."""
    code = ("from liif.evaluation.evaluate import print_table\n"
            "rec = dict(dataset='x', scale=2, eval_type='none', psnr=1.0, psnr_bicubic=1.0, ssim=1.0, n_images=1)\n"
            "print_table([rec] * 20000)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == ""
