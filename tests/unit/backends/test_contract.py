"""Each backend module exports the names of liif.backends.contract.Backend, its tensors offer the
surface written down in liif.backends.contract.Tensor, with torch's meaning (checked against NumPy),
and the framework-neutral code uses nothing beyond it."""
import ast
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest

from liif import backends
from liif.backends.contract import ATTRIBUTES, BACKEND_NAMES, METHODS, Tensor

FRAMEWORKS = ["torch", pytest.param("jittor", marks=[pytest.mark.jittor, pytest.mark.skipif(
    importlib.util.find_spec("jittor") is None, reason="jittor is not installed")])]
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
    close(t.sum(0), a.sum(0))
    assert abs(float(t.mean().item()) - float(a.mean())) < 1e-6
    assert t.float().dtype == t.dtype
    close(t.view(2, -1), a.reshape(2, -1)), close(t.reshape(6, 4), a.reshape(6, 4))
    close(t.permute(2, 0, 1), a.transpose(2, 0, 1)), close(t.unsqueeze(-1), a[..., None])
    close(t.permute(1, 0, 2).contiguous().view(-1), a.transpose(1, 0, 2).reshape(-1))


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
