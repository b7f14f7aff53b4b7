"""torch's checkpoint format read and written with NumPy only (liif.io.torchfile), against torch itself:
what we write torch.load(weights_only=True) reads back, and what torch.save writes (zip and legacy,
views into shared storages, a model's state_dict with its metadata) we read back. What a crafted
file may demand of memory and time: tests/unit/io/test_torchfile_bounds.py."""
import numpy as np
import pytest

from liif.io import torchfile

torch = pytest.importorskip("torch")


def _payload():
    rng = np.random.default_rng(5)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "i64": np.arange(-3, 4, dtype=np.int64),
        "bool": rng.uniform(size=(2, 3)) > 0.5,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "view": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],  # non-contiguous
        "nested": {"list": [1, -2, 300, 70000, -2 ** 40, 2 ** 70, 1.5, "x", None, True, False],
                   "tuple": (0.9, 0.999), 0: {"step": np.array(3.0, np.float32)}, "empty": {}, "none": None,
                   "unicode": "héllo"},
    }


def _assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def _to_numpy(obj):
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _to_torch(obj):
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, order="C"))
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def test_our_file_is_read_by_torch_weights_only(tmp_path):
    obj = _payload()
    path = str(tmp_path / "ours.pth")
    torchfile.save(obj, path)
    _assert_same(obj, _to_numpy(torch.load(path, weights_only=True)))
    _assert_same(obj, torchfile.load(path))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_written_file_is_read_without_torch(tmp_path, zipped):
    obj = _payload()
    path = str(tmp_path / "t.pth")
    tobj = _to_torch(obj)
    base = torch.arange(10, dtype=torch.float32)
    tobj["views"] = [base[2:5], base.view(2, 5).t()]  # views into one storage, with an offset and strides
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    tobj["sd"] = net.state_dict()        # an OrderedDict with `_metadata` (pickled as its state)
    tobj["param"] = net[0].weight         # a Parameter (torch._utils._rebuild_parameter)
    tobj["size"] = torch.Size([2, 3])
    torch.save(tobj, path, _use_new_zipfile_serialization=zipped)
    got = torchfile.load(path)
    obj["views"] = [base[2:5].numpy(), base.view(2, 5).t().numpy()]
    obj["sd"] = {k: v.numpy() for k, v in net.state_dict().items()}
    obj["param"] = net[0].weight.detach().numpy()
    obj["size"] = (2, 3)
    _assert_same(obj, got)
    # as torch's loader gives them: views of one storage, read once (writable: the storage is ours)
    assert np.shares_memory(*got["views"]) and all(a.flags.writeable for a in got["views"])


def test_arrays_written_into_a_file_object_too(tmp_path):
    import io
    buffer = io.BytesIO()
    torchfile.save({"w": np.ones(3, np.float32)}, buffer)
    (tmp_path / "b.pth").write_bytes(buffer.getvalue())
    assert torch.load(tmp_path / "b.pth", weights_only=True)["w"].tolist() == [1, 1, 1]
