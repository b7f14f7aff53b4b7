"""Checkpoints: the original layout loads, ours round-trips bit for bit and stays loadable
by the original code's loader (strict state_dict) and by torch.load(weights_only=True)."""
import os

import numpy as np
import pytest
import torch

from conftest import FRAMEWORKS

import liif
from liif import backends
from liif.errors import CheckpointError
from liif.models import checkpoint
from liif.io import torchfile
from liif.training.trainer import Trainer


def test_saved_checkpoint_reloads_bitwise(tmp_path, fixtures_dir):
    backend = backends.get("torch")
    original = checkpoint.read(str(fixtures_dir / "ckpt_edsr-baseline-liif-c.pth"))
    model = liif.load_model(str(fixtures_dir / "ckpt_edsr-baseline-liif-c.pth"), device="cpu")
    path = tmp_path / "ours.pth"
    checkpoint.write(checkpoint.envelope(model.spec, backend.state_dict_numpy(model.net), epoch=3,
                                         extra={"framework": "torch"}), str(path))
    raw = torch.load(path, weights_only=True)  # what the original code (and a careful user) does
    assert raw["model"]["name"] == "liif" and raw["epoch"] == 3 and raw["liif"]["framework"] == "torch"
    assert raw["model"]["args"] == original["model"]["args"]
    assert set(raw["model"]["sd"]) == set(original["model"]["sd"])  # sub_mean/add_mean kept for the original loader

    reloaded = liif.load_model(str(path), device="cpu")
    rng = np.random.default_rng(0)
    inp = rng.uniform(-1, 1, (1, 3, 12, 17)).astype(np.float32)
    coord = rng.uniform(-1, 1, (1, 300, 2)).astype(np.float32)
    cell = np.full((1, 300, 2), 2 / 40, np.float32)
    np.testing.assert_array_equal(model.query(inp, coord, cell), reloaded.query(inp, coord, cell))


def test_original_layout_round_trips(tmp_path, fixtures_dir):
    src = fixtures_dir / "ckpt_edsr-baseline-metasr.pth"
    obj = checkpoint.read(str(src))
    checkpoint.write(obj, str(tmp_path / "copy.pth"))
    a, b = torch.load(src, weights_only=True), torch.load(tmp_path / "copy.pth", weights_only=True)
    assert a.keys() == b.keys() and a["model"]["args"] == b["model"]["args"] and a["epoch"] == b["epoch"]
    for k, v in a["model"]["sd"].items():
        assert torch.equal(v, b["model"]["sd"][k]), k
    assert a["optimizer"]["name"] == b["optimizer"]["name"]


def test_write_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "epoch-last.pth"
    checkpoint.write({"model": {"name": "mlp", "args": {}, "sd": {}}, "epoch": 1}, str(path))

    def broken_save(obj, file):  # file: the temporary file's object
        file.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torchfile, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write({"model": {"name": "mlp", "args": {}, "sd": {}}, "epoch": 2}, str(path))
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-last.pth"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_bad_checkpoints_say_so(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a torch file, but not LIIF's layout
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="checkpoint"):
        liif.load_model(str(path), device="cpu")


@pytest.mark.parametrize("kind, message", [("missing", "checkpoint not found"), ("folder", "is a folder"),
                                           ("fifo", "is not a regular file"), ("device", "is not a regular file")])
def test_a_checkpoint_path_that_is_not_a_file_says_what_it_is(tmp_path, kind, message):
    """A fifo is refused before it is opened (opening it would wait for a writer), a device before
    it is read (/dev/zero never ends); neither is 'not found'."""
    path = {"missing": tmp_path / "none.pth", "folder": tmp_path, "fifo": tmp_path / "fifo", "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(CheckpointError, match=message) as err:
        checkpoint.read(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_weights_are_checked_finite_only_once_they_fit_the_model(tmp_path):
    """A weight's shape may be a view far larger than the bytes behind it: the shape check against
    the network comes first, and bounds what the finiteness check reads."""
    net_sd = {"layers.0.weight": np.full((2, 3), np.nan, np.float32)}
    path = str(tmp_path / "nan.pth")
    checkpoint.write({"model": {"name": "mlp", "args": {"in_dim": 3, "out_dim": 1, "hidden_list": []}, "sd": net_sd},
                      "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        checkpoint.load(path, backends.get("torch"))


def test_checkpoint_of_another_model_names_the_mismatch(tmp_path, fixtures_dir):
    obj = checkpoint.read(str(fixtures_dir / "ckpt_edsr-baseline-liif-d.pth"))
    obj["model"]["args"]["imnet_spec"]["args"]["hidden_list"] = [256, 256, 256, 256]  # lie about the model
    checkpoint.write(obj, str(tmp_path / "mismatch.pth"))
    with pytest.raises(CheckpointError, match="missing: imnet.layers.6"):
        liif.load_model(str(tmp_path / "mismatch.pth"), device="cpu")


EDSR = {"name": "edsr-baseline", "args": {"no_upsampling": True}}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("spec,message", [
    ({"name": "liif", "args": {"encoder_spec": EDSR, "cel_decode": False}}, "unknown argument 'cel_decode' of model 'liif'"),
    ({"name": "liif", "args": {"encoder_spec": EDSR, "cell_decode": "no"}}, "argument 'cell_decode' of model 'liif' must be bool, got 'no'"),
    ({"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 64.5}}}},
     "argument 'n_feats' of 'edsr-baseline' (the encoder_spec of 'liif') must be int, got 64.5"),
    ({"name": "liif", "args": {"encoder_spec": EDSR, "imnet_spec": {"name": "mlp", "args": {"hidden_list": ["256"]}}}},
     "argument 'hidden_list' of 'mlp' (the imnet_spec of 'liif') must be list[int]"),
    ({"name": "liif", "args": {"encoder_spec": {"name": "edsr-bseline", "args": {}}}}, "unknown model 'edsr-bseline'"),
    ({"name": "liff", "args": {}}, "unknown model 'liff'"),
    ({"name": "liif", "args": {}}, "model 'liif' needs the argument(s) encoder_spec"),
    ({"name": "liif", "args": {"encoder_spec": EDSR, "local_ensemble": 1}}, "argument 'local_ensemble' of model 'liif' must be bool"),
])
def test_checkpoint_model_arguments_are_checked_before_building(tmp_path, framework, spec, message):
    """Unknown or mistyped arguments (the constructor's signature decides) are one-line bad-checkpoint errors."""
    path = tmp_path / "args.pth"
    checkpoint.write({"model": {**spec, "sd": {}}, "epoch": 1}, str(path))
    with pytest.raises(CheckpointError) as err:
        liif.load_model(str(path), framework=framework, device="cpu")
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_constructor_failing_on_well_typed_arguments_is_not_a_bad_checkpoint(tmp_path, framework):
    """Only the checked problems are CheckpointErrors; the framework's own error (a negative size
    passes the signature check) keeps its type and traceback."""
    path = tmp_path / "negative.pth"
    checkpoint.write({"model": {"name": "mlp", "args": {"in_dim": -3, "out_dim": 1, "hidden_list": []}, "sd": {}},
                      "epoch": 1}, str(path))
    with pytest.raises(Exception) as err:
        liif.load_model(str(path), framework=framework, device="cpu")
    assert not isinstance(err.value, CheckpointError)


@pytest.mark.parametrize("error", [RuntimeError, ZeroDivisionError])
def test_a_constructor_bug_is_not_a_bad_checkpoint(fixtures_dir, monkeypatch, error):
    from liif.models import registry
    mlp = registry.models.get("mlp")

    def broken(self, in_dim: int, out_dim: int, hidden_list: list[int]):  # the same signature: the spec passes
        raise error("a bug in the model code")

    monkeypatch.setattr(mlp, "__init__", broken)
    path = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    with pytest.raises(error, match="a bug in the model code"):
        liif.load_model(path, device="cpu")
    with pytest.raises(error, match="a bug in the model code"):
        liif.create_model("edsr_baseline_liif", pretrained_path=path, device="cpu")


def test_non_finite_weights_are_refused_by_every_loader(tmp_path, fixtures_dir):
    obj = checkpoint.read(str(fixtures_dir / "ckpt_edsr-baseline-liif.pth"))
    obj["model"]["sd"]["imnet.layers.0.bias"][3] = np.nan
    path = str(tmp_path / "nan.pth")
    checkpoint.write(obj, path)
    spec = {"name": obj["model"]["name"], "args": obj["model"]["args"]}
    for load in (lambda: liif.load_model(path, device="cpu"),
                 lambda: liif.create_model("edsr_baseline_liif", pretrained_path=path, device="cpu"),
                 lambda: Trainer(spec, None, tmp_path / "run", device="cpu", checkpoint=path)):
        with pytest.raises(CheckpointError, match=r"non-finite weights \(nan or inf in 'imnet.layers.0.bias'\)"):
            load()


def test_training_from_another_models_weights_names_the_difference(tmp_path, fixtures_dir):
    path = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    spec = checkpoint.read(path)["model"]
    spec = {"name": spec["name"], "args": {**spec["args"], "cell_decode": False}}
    with pytest.raises(CheckpointError, match="holds another model than the config's model: "
                                              "cell_decode is True in the checkpoint, False asked for"):
        Trainer(spec, None, tmp_path / "run", device="cpu", checkpoint=path)
