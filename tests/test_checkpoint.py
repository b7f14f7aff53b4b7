"""Checkpoints: the original layout loads, ours round-trips bit for bit and stays loadable
by the original code's loader (strict state_dict) and by torch.load(weights_only=True)."""
import numpy as np
import pytest
import torch

import liif
from liif import backends, checkpoint, torchfile


def test_saved_checkpoint_reloads_bitwise(tmp_path, fixtures_dir):
    B = backends.get("torch")
    original = checkpoint.read(str(fixtures_dir / "ckpt_edsr-baseline-liif-c.pth"))
    model = liif.load_model(str(fixtures_dir / "ckpt_edsr-baseline-liif-c.pth"), device="cpu")
    path = tmp_path / "ours.pth"
    checkpoint.write(checkpoint.envelope(model.spec, B.state_dict_numpy(model.net), epoch=3,
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
    B = backends.get("torch")
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

    def broken_save(obj, p):
        open(p, "wb").write(b"half")
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
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint"):
        liif.load_model(str(path), device="cpu")


def test_checkpoint_of_another_model_names_the_mismatch(tmp_path, fixtures_dir):
    obj = checkpoint.read(str(fixtures_dir / "ckpt_edsr-baseline-liif-d.pth"))
    obj["model"]["args"]["imnet_spec"]["args"]["hidden_list"] = [256, 256, 256, 256]  # lie about the model
    checkpoint.write(obj, str(tmp_path / "mismatch.pth"))
    with pytest.raises(checkpoint.CheckpointError, match="missing: imnet.layers.6"):
        liif.load_model(str(tmp_path / "mismatch.pth"), device="cpu")
