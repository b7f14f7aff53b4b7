"""Each backend module exports the names of liif.backends.contract.Backend, its tensors offer the
surface written down in liif.backends.contract.Tensor, with torch's meaning (checked against NumPy),
and the framework-neutral code uses nothing beyond it."""
import ast
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import FRAMEWORKS
from liif import backends
from liif.backends.contract import ATTRIBUTES, BACKEND_NAMES, METHODS, Tensor

ROOT = Path(__file__).resolve().parents[3]


def _arrays():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_backend_exports_the_names_of_the_contract_in_its_order(framework):
    """liif.backends.contract.Backend lists every public name of each backend module, no more, no less
    (imported modules and the project's error classes are not the backend's own)."""
    module = backends.get(framework)
    exported = [name for name, value in vars(module).items() if not name.startswith("_")
                and (name == "nn" or not isinstance(value, types.ModuleType))
                and getattr(value, "__module__", None) != "liif.errors"]
    assert exported == list(BACKEND_NAMES)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tensors_have_every_method_of_the_contract(framework):
    backend = backends.get(framework)
    t = backend.tensor(_arrays()[0])
    assert isinstance(t, Tensor)
    missing = [name for name in ATTRIBUTES + METHODS if not hasattr(t, name)]
    assert not missing, f"{framework} tensors lack {missing}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_method_means_what_torch_means(framework):
    backend = backends.get(framework)
    a, m = _arrays()
    t, u = backend.tensor(a), backend.tensor(m)
    n = backend.to_numpy
    close = lambda got, want: np.testing.assert_allclose(n(got), want, rtol=1e-6, atol=1e-6)  # noqa: E731

    assert tuple(t.shape) == a.shape and t.shape[:2] == a.shape[:2]
    assert t.dtype == backend.tensor(a).dtype and t.dtype != backend.tensor(np.zeros(2, np.int32)).dtype
    close(t[:, 1:3, 0], a[:, 1:3, 0])
    c = t.clone()
    c[:, :, 0] += 1.5        # in place, through __getitem__, __iadd__, __setitem__
    c[:, :, 1] -= 0.5
    c[:, :, 2] *= 3
    c[:, 0:1] = t[:, 2:3]    # slice assignment
    want = a.copy()
    want[:, :, 0] += 1.5
    want[:, :, 1] -= 0.5
    want[:, :, 2] *= 3
    want[:, 0:1] = a[:, 2:3]
    close(c, want)
    close(t, a)              # the clone's edits left the source alone
    close(t + t, a + a), close(0 + t, a), close(t - 1, a - 1), close(t * 2, a * 2), close(2 * t, 2 * a)
    close(t / 4, a / 4), close(t @ u, a @ m), close(t.clamp(-0.5, 0.5), a.clip(-0.5, 0.5)), close(t.abs(), abs(a))
    close(t.sum(0), a.sum(0)), close(t.cos(), np.cos(a)), close(t.sin(), np.sin(a))
    assert abs(float(t.mean().item()) - float(a.mean())) < 1e-6
    assert t.float().dtype == t.dtype
    close(t.view(2, -1), a.reshape(2, -1)), close(t.reshape(6, 4), a.reshape(6, 4))
    close(t.permute(2, 0, 1), a.transpose(2, 0, 1)), close(t.unsqueeze(-1), a[..., None])
    close(t.permute(1, 0, 2).contiguous().view(-1), a.transpose(1, 0, 2).reshape(-1))
    parts = t.split([1, 2, 1], -1)
    assert len(parts) == 3 and [tuple(p.shape) for p in parts] == [(2, 3, 1), (2, 3, 2), (2, 3, 1)]
    close(parts[1], a[:, :, 1:3]), close(parts[2], a[:, :, 3:])


def _bilinear_border(x, coord):
    """torch's grid_sample(mode='bilinear', padding_mode='border', align_corners=False) in float64
    NumPy (the float32 coord + 1 first, as torch)."""
    b, c, h, w = x.shape
    row = np.clip((coord[..., 0] + np.float32(1)).astype(np.float64) * h / 2 - 0.5, 0, h - 1)
    col = np.clip((coord[..., 1] + np.float32(1)).astype(np.float64) * w / 2 - 0.5, 0, w - 1)
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (row - r0)[..., None], (col - c0)[..., None]
    at = lambda r, k: x[np.arange(b)[:, None], :, r, k]  # noqa: E731  (B, Q, C)
    return ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c1)
            + fr * (1 - fc) * at(r1, c0) + fr * fc * at(r1, c1))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("size", [(7, 13), (48, 48), (1, 5), (300, 517)])
def test_grid_sample_bilinear_is_torchs_with_or_without_a_window(framework, size):
    """torch's bilinear grid_sample (border, align_corners=False) bit for bit on this CPU (points
    outside [-1, 1] and exact pixel centres included), its meaning in float64 NumPy, and a window
    of the map (touching the map's bottom and right border) sampled as the whole map."""
    import torch
    import torch.nn.functional as F
    backend = backends.get(framework)
    height, width = size
    rng = np.random.default_rng(height)
    x = rng.standard_normal((2, 3, height, width)).astype(np.float32)
    coord = rng.uniform(-1.2, 1.2, (2, 3000, 2)).astype(np.float32)
    coord[:, :50, 0] = (2 * rng.integers(0, height, 50) + 1) / height - 1  # pixel centres: weights 0 and 1
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coord).flip(-1).unsqueeze(1), mode="bilinear",
                        padding_mode="border", align_corners=False)[:, :, 0, :].permute(0, 2, 1).numpy()
    got = backend.to_numpy(backend.grid_sample_bilinear(backend.tensor(x), backend.tensor(coord)))
    # the meaning, to the float32 source index's rounding (1 ulp of the size) times the values' range
    ulp = float(np.spacing(np.float32(max(size))))
    np.testing.assert_allclose(got, _bilinear_border(x, coord), rtol=0, atol=2 * ulp * float(np.abs(x).max()) + 1e-6)
    np.testing.assert_array_equal(got, ref)
    whole = backend.to_numpy(backend.grid_sample_bilinear(backend.tensor(x), backend.tensor(coord), (height, width, 0, 0)))
    np.testing.assert_array_equal(whole, ref)
    if min(size) < 5:
        return
    top, left = 2, 3
    part = x[:, :, top:, left:].copy()
    row = np.floor(np.clip((coord[..., 0] + 1) * height / 2 - 0.5, 0, height - 1))
    col = np.floor(np.clip((coord[..., 1] + 1) * width / 2 - 0.5, 0, width - 1))
    inside = (row >= top) & (col >= left)  # the four neighbours lie in the window
    assert inside.sum() > 500
    windowed = backend.to_numpy(backend.grid_sample_bilinear(backend.tensor(part), backend.tensor(coord),
                                                             (height, width, top, left)))
    np.testing.assert_array_equal(windowed[inside], ref[inside])


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("size", [(7, 13), (48, 48), (300, 517)])
def test_grid_sample_nearest_of_channels_last_maps_is_torchs(framework, size):
    """Maps concatenated by `cat_channels_last` (torch: read as rows) are sampled as torch's nearest
    grid_sample samples the plain map, bit for bit: exact halves (ties, to even), points outside
    [-1, 1] (0), and a window of it sampled as the whole map."""
    import torch
    import torch.nn.functional as F
    backend = backends.get(framework)
    height, width = size
    rng = np.random.default_rng(width)
    x = rng.standard_normal((2, 9, height, width)).astype(np.float32)
    coord = rng.uniform(-1.1, 1.1, (2, 3000, 2)).astype(np.float32)
    coord[:, :40, 0] = 2 * rng.integers(0, height, 40) / height - 1  # a pixel's edge: a tie
    coord[:, 40:80, 1] = 2 * rng.integers(0, width, 40) / width - 1
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coord).flip(-1).unsqueeze(1), mode="nearest",
                        align_corners=False)[:, :, 0, :].permute(0, 2, 1).numpy()
    rows = backend.cat_channels_last([backend.tensor(x[:, :4]), backend.tensor(x[:, 4:])])
    if framework == "torch":  # the row-gathering path, not grid_sample's
        assert rows.is_contiguous(memory_format=torch.channels_last) and not rows.is_contiguous()
    got = backend.to_numpy(backend.grid_sample_nearest(rows, backend.tensor(coord)))
    assert (ref == 0).all(-1).sum() > 100  # some points fall outside
    np.testing.assert_array_equal(got, ref)
    top, left = 2, 3
    part = backend.cat_channels_last([backend.tensor(x[:, :, top:, left:].copy())])
    windowed = backend.to_numpy(backend.grid_sample_nearest(part, backend.tensor(coord), (height, width, top, left)))
    row = np.round(((coord[..., 0] + 1) * height - 1) / 2)
    col = np.round(((coord[..., 1] + 1) * width - 1) / 2)
    inside = (row >= top) & (col >= left)
    assert inside.sum() > 1000
    np.testing.assert_array_equal(windowed[inside], ref[inside])
    assert (windowed[~inside] == 0).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_jittor_has_internal_failures(framework):
    """is_internal_failure: Jittor's failed checks in its C++ core (the CLI then says to run again);
    nothing else, and nothing of torch's."""
    B = backends.get(framework)
    check_failed = RuntimeError("[f op_compiler.cc:832] Check failed: member.size() <= var_num  Something wrong... "
                                "Could you please report this issue?")
    assert B.is_internal_failure(check_failed) == (framework == "jittor")
    assert backends.is_internal_failure(framework, check_failed) == (framework == "jittor")
    assert not B.is_internal_failure(RuntimeError("CUDA out of memory")) and not B.is_internal_failure(KeyError("x"))


NOT_TENSORS = {  # local names in framework-neutral code that are not tensors (imported modules are skipped too)
    "backend", "self", "nn", "layers", "preds", "areas", "blocks", "outs", "image", "spec", "args", "ckpt",
    "model", "framework_cfg", "param", "first", "layer", "encoding",
}
NOT_NETWORKS = {"__init__", "registry", "presets", "init", "checkpoint"}  # liif/models/ modules without tensors
OTHER_CALLS = {"append", "get", "items", "astype", "transpose", "reshape", "update"}  # on lists, dicts, numpy


def test_framework_neutral_code_calls_only_contract_methods():
    """Every `x.method(...)` on a local name in the models, api and step modules is a contract
    method (or a list/dict/NumPy call): what a new backend must offer is all in the contract."""
    networks = [p for p in sorted((ROOT / "liif" / "models").glob("*.py")) if p.stem not in NOT_NETWORKS]
    files = networks + [ROOT / "liif" / "inference" / "api.py", ROOT / "liif" / "training" / "step.py"]
    outside = set()
    for path in files:
        tree = ast.parse(path.read_text())
        modules = {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    and node.func.value.id not in NOT_TENSORS | modules):
                name = node.func.attr
                if name not in METHODS and name not in OTHER_CALLS:
                    outside.add(f"{path.name}: {node.func.value.id}.{name}")
    assert not outside, f"tensor methods outside liif.backends.contract.Tensor: {sorted(outside)}"
