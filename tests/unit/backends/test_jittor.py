"""The Jittor backend computes what the PyTorch backend (and the original code) computes.

Forward parity on the original checkpoints and on random weights, the nearest-sample tie rule,
one Adam training step, torch's optimizer state layout, and checkpoints across the frameworks
(and read with torch blocked). Skipped when jittor is not installed (CI installs it: .ci/setup_jittor.sh).
"""
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("jittor") is not None:
    from liif.backends import jittor_setup

    jittor_setup.import_jittor()  # jittor's environment defaults must precede its first import
jt = pytest.importorskip("jittor")
torch = pytest.importorskip("torch")

import liif  # noqa: E402
from liif.models import checkpoint, registry  # noqa: E402
from liif.inference.api import Model  # noqa: E402
from liif.backends import jittor as J  # noqa: E402
from liif.backends import torch as T  # noqa: E402
from liif.coords import make_coord  # noqa: E402
from liif.training.step import train_step  # noqa: E402

pytestmark = pytest.mark.jittor

ROOT = str(Path(__file__).resolve().parents[3])


def tiny_edsr(**args):
    return {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 8, "no_upsampling": True, **args}}


def tiny_liif(encoder=None, hidden=(16, 16), **flags):
    return {"name": "liif", "args": {"encoder_spec": encoder or tiny_edsr(),
                                     "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}},
                                     **flags}}


def pair(spec, seed=0):
    """The same weights on both backends: torch builds (seeded), jittor copies."""
    torch.manual_seed(seed)
    tnet = registry.make(spec, T)
    jnet = registry.make(spec, J)
    J.load_state_dict_numpy(jnet, T.state_dict_numpy(tnet))
    return Model(tnet, T, spec, "cpu"), Model(jnet, J, spec, "cpu")


def queries(h, w, extra=0, rng=None):
    """All pixel centres of an h x w output (+ `extra` random points, some outside [-1, 1]), and cells."""
    coord = make_coord((h, w))
    if extra:
        coord = np.concatenate([coord, rng.uniform(-1.1, 1.1, (extra, 2)).astype(np.float32)])
    cell = np.empty_like(coord)
    cell[:, 0], cell[:, 1] = 2 / h, 2 / w
    return coord[None], cell[None]


# --- the contract --------------------------------------------------------------------------

def _contract(mod):
    """Public names in definition order; imported modules (np, torch, jt, ...) and the project's error
    classes (liif.errors, imported) left out, but `nn` kept."""
    return [n for n in vars(mod) if not n.startswith("_")
            and (n == "nn" or not isinstance(getattr(mod, n), types.ModuleType))
            and getattr(getattr(mod, n), "__module__", None) != "liif.errors"]


def test_backends_export_the_same_names_in_the_same_order():
    assert _contract(J) == _contract(T)
    assert J.name == "jittor" and T.name == "torch"
    for layer in ("Conv2d", "Linear", "ReLU", "Sequential", "ModuleList", "PixelShuffle"):
        assert callable(getattr(J.nn, layer))


def test_device():
    assert J.device("cpu") == "cpu"
    assert J.device("auto") in ("cpu", "cuda")
    if not jt.has_cuda:
        assert J.device("auto") == "cpu"
        with pytest.raises(RuntimeError, match="device=cuda"):
            J.device("cuda")
    with pytest.raises(ValueError):
        J.device("tpu")


def test_environment_defaults_do_not_override_the_user():
    env = {"use_mkl": "0", "cache_name": "mine"}
    done = jittor_setup.configure(env)
    assert env["use_mkl"] == "0" and env["cache_name"] == "mine"
    assert "use_mkl" not in done and env["FIX_TORCH_ERROR"] == "0"
    if not jittor_setup.has_gpu():
        assert env["nvcc_path"] == ""  # set and empty: no CUDA build attempt
    assert "log_silent" not in os.environ  # only set during the import
    assert "use_parallel_op_compiler" not in jittor_setup.configure({"use_parallel_op_compiler": "8"})
    # the defaults reach jittor: its flags read the environment when it is imported
    import jittor
    assert jittor.flags.use_parallel_op_compiler == int(os.environ["use_parallel_op_compiler"]) == 0


def test_mpi_is_on_under_mpirun_only():
    assert jittor_setup.configure({})["use_mpi"] == "0"
    assert jittor_setup.configure({"OMPI_COMM_WORLD_SIZE": "2"})["use_mpi"] == "1"
    assert "use_mpi" not in jittor_setup.configure({"use_mpi": "1"})  # the user's own setting wins
    with pytest.raises(RuntimeError, match="use_mpi=0"):  # else jittor's import dies on None.world_rank()
        jittor_setup.check_mpi({"OMPI_COMM_WORLD_SIZE": "2", "use_mpi": "0"})
    jittor_setup.check_mpi({"use_mpi": "0"})
    assert "use_mpi" not in os.environ  # only set during the import: a child may be launched by mpirun
    assert J.distributed_init() == (0, 1) and J.all_reduce_mean(2.5) == 2.5


# --- the two ops that differ between the frameworks -----------------------------------------

def test_unfold3x3_matches_torch():
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 5, 7), (1, 4, 9, 4), (1, 1, 1, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = J.to_numpy(J.unfold3x3(J.tensor(x)))
        np.testing.assert_array_equal(got, T.to_numpy(T.unfold3x3(T.tensor(x))))  # channel 9c + k


def test_grid_sample_nearest_matches_torch_including_ties():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 4)).astype(np.float32)
    # every pixel border of an 8x4 map is exactly representable: each is a tie (u = k + 0.5)
    rows = -1 + 2 * np.arange(9, dtype=np.float32) / 8
    cols = -1 + 2 * np.arange(5, dtype=np.float32) / 4
    ties = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    u = ((ties + 1) * np.array([8, 4], np.float32) - 1) / 2
    assert np.all(u - np.floor(u) == 0.5)
    noise = rng.uniform(-1.3, 1.3, (300, 2)).astype(np.float32)  # outside [-1, 1] too (zero padding)
    centres = make_coord((8, 4))
    coord = np.stack([np.concatenate([ties, noise, centres])] * 2)
    got = J.to_numpy(J.grid_sample_nearest(J.tensor(x), J.tensor(coord)))
    want = T.to_numpy(T.grid_sample_nearest(T.tensor(x), T.tensor(coord)))
    np.testing.assert_array_equal(got, want)
    assert np.any(want[:, :len(ties)] == 0) and np.any(want[:, :len(ties)] != 0)  # ties both inside and out


# --- the same random weights on both backends ------------------------------------------------

SPECS = {
    "liif": tiny_liif(),
    "liif-c": tiny_liif(cell_decode=False),
    "liif-u": tiny_liif(feat_unfold=False),
    "liif-e": tiny_liif(local_ensemble=False),
    "liif-d": tiny_liif(hidden=(16,)),
    "metasr": {"name": "metasr", "args": {"encoder_spec": tiny_edsr()}},
    "rdn-liif": tiny_liif(encoder={"name": "rdn", "args": {"G0": 8, "RDNconfig": "A", "no_upsampling": True}}),
    "baseline-x2": {"name": "liif", "args": {"encoder_spec": tiny_edsr(no_upsampling=False, scale=2)}},  # no imnet
}


@pytest.mark.parametrize("key", list(SPECS))
def test_same_weights_same_outputs(key):
    tmodel, jmodel = pair(SPECS[key])
    assert list(T.state_dict_numpy(tmodel.net)) == list(J.state_dict_numpy(jmodel.net))
    rng = np.random.default_rng(2)
    inp = rng.uniform(-1, 1, (2, 3, 7, 9)).astype(np.float32)
    for h, w, extra in [(14, 18, 0), (17, 22, 0), (10, 31, 40), (7, 9, 0)]:  # x2, x2.4, non-square, x1
        coord, cell = queries(h, w, extra, rng)
        coord, cell = np.repeat(coord, 2, 0), np.repeat(cell, 2, 0)
        want = tmodel.query(inp, coord, cell)
        got = jmodel.query(inp, coord, cell, bsize=97)  # chunked differently on purpose
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max()), (key, h, w)


@pytest.mark.parametrize("spec", [{"name": "rdn", "args": {"G0": 8, "RDNconfig": "B", "scale": 3}},
                                  {"name": "rdn", "args": {"G0": 8, "RDNconfig": "A", "scale": 4}},
                                  {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "scale": 4}},
                                  {"name": "edsr", "args": {"n_resblocks": 1, "n_feats": 8, "scale": 3}}],
                         ids=["rdn-B-x3", "rdn-A-x4", "edsr-baseline-x4", "edsr-x3"])
def test_encoders_with_upsampling(spec):
    tmodel, jmodel = pair(spec)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 5, 6)).astype(np.float32)
    with torch.no_grad():
        want = tmodel.net(T.tensor(x)).numpy()
    with J.no_grad():
        got = J.to_numpy(jmodel.net(J.tensor(x)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_strict_state_dict_loading():
    _, jmodel = pair(SPECS["liif-d"])
    sd = J.state_dict_numpy(jmodel.net)
    with pytest.raises(ValueError, match="missing: imnet.layers.2.bias"):
        J.load_state_dict_numpy(jmodel.net, {k: v for k, v in sd.items() if k != "imnet.layers.2.bias"})
    with pytest.raises(ValueError, match="unexpected: extra"):
        J.load_state_dict_numpy(jmodel.net, {**sd, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="shape mismatch: imnet.layers.0.weight"):
        J.load_state_dict_numpy(jmodel.net, {**sd, "imnet.layers.0.weight": np.zeros((3, 3), np.float32)})


# --- training ----------------------------------------------------------------------------------

def _assert_params_close(tnet, jnet, grads, lr, n_steps):
    """Parameters within 1e-6, except where a gradient is below 1e-6 (about 100x Adam's eps).

    There Adam's step, lr * m / (sqrt(v) + eps), is ~lr * g / (|g| + eps): float noise in a tiny
    gradient (summation order differs between the frameworks; with L1 such gradients are sums of
    nearly cancelling signs) moves the parameter by up to ~2 lr per step. Those few elements are
    compared with 2 * lr * n_steps instead.
    """
    a, b = T.state_dict_numpy(tnet), J.state_dict_numpy(jnet)
    assert list(a) == list(b)
    n_noisy = 0
    for k in a:
        diff = np.abs(a[k] - b[k])
        noisy = np.abs(grads[k]) < 1e-6 if k in grads else np.zeros(diff.shape, bool)
        assert diff[~noisy].max(initial=0) <= 1e-6, k
        assert diff[noisy].max(initial=0) <= 2 * lr * n_steps + 1e-6, k
        n_noisy += int((noisy & (diff > 1e-6)).sum())
    assert n_noisy <= 1e-3 * sum(v.size for v in a.values())


def _torch_grads(tnet, batch):
    tnet.zero_grad()
    inp, coord, cell, gt = (torch.from_numpy(batch[k]) for k in ("inp", "coord", "cell", "gt"))
    (tnet(inp, coord, cell) - gt).abs().mean().backward()
    grads = {k: p.grad.numpy().copy() for k, p in tnet.named_parameters() if p.grad is not None}
    tnet.zero_grad()
    return grads


@pytest.mark.slow
def test_official_training_step(fixtures_dir):
    """One step of the original trainer (L1, Adam lr 1e-4) on its own batch, on both backends."""
    data, ref = np.load(fixtures_dir / "data_pipeline.npz"), np.load(fixtures_dir / "train_step.npz")
    batch = {"inp": ((data["train_inp"] - 0.5) / 0.5)[None], "coord": data["train_coord"][None],
             "cell": data["train_cell"][None], "gt": ((data["train_gt"] - 0.5) / 0.5)[None]}
    path = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    tmodel, jmodel = liif.load_model(path, "torch", "cpu"), liif.load_model(path, "jittor", "cpu")
    grads = _torch_grads(tmodel.net, batch)
    jmodel.query(batch["inp"], batch["coord"][:, :5], batch["cell"][:, :5])  # eval mode must not stop training
    losses = [train_step(backend, m.net, backend.adam(m.net, 1e-4), batch) for backend, m in ((T, tmodel), (J, jmodel))]
    assert abs(losses[1] - losses[0]) <= 1e-6 * losses[0]
    assert abs(losses[1] - float(ref["loss"])) <= 1e-6 * losses[0]
    after = J.state_dict_numpy(jmodel.net)
    for key in ref.files:
        if key.startswith("after/"):
            np.testing.assert_allclose(after[key[len("after/"):]], ref[key], atol=1e-6, rtol=0, err_msg=key)
    _assert_params_close(tmodel.net, jmodel.net, grads, 1e-4, 1)
    frozen = ("encoder.sub_mean.weight", "encoder.sub_mean.bias", "encoder.add_mean.weight", "encoder.add_mean.bias")
    before = checkpoint.read(path)["model"]["sd"]
    for key in frozen:
        np.testing.assert_array_equal(after[key], before[key])


def _batch(rng, n=2, h=6, w=5, q=40):
    return {"inp": rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32),
            "coord": rng.uniform(-1, 1, (n, q, 2)).astype(np.float32),
            "cell": np.full((n, q, 2), 2 / (3 * h), np.float32),
            "gt": rng.uniform(-1, 1, (n, q, 3)).astype(np.float32)}


def test_adam_steps_and_state_match_torch_and_resume_across_backends():
    tmodel, jmodel = pair(SPECS["liif"])
    tnet, jnet = tmodel.net, jmodel.net
    topt, jopt = T.adam(tnet, 1e-3), J.adam(jnet, 1e-3)
    rng = np.random.default_rng(4)
    batches = [_batch(rng) for _ in range(4)]
    for i, batch in enumerate(batches[:2]):
        grads = _torch_grads(tnet, batch)
        lt, lj = train_step(T, tnet, topt, batch), train_step(J, jnet, jopt, batch)
        assert abs(lt - lj) <= 1e-6 * lt
        _assert_params_close(tnet, jnet, grads, 1e-3, i + 1)

    ts, js = T.optimizer_state_numpy(topt), J.optimizer_state_numpy(jopt)
    assert js["param_groups"] == ts["param_groups"]  # torch 2.13's keys, values and parameter ids
    assert list(js["state"]) == list(ts["state"]) and len(js["state"]) == len(ts["param_groups"][0]["params"]) - 4
    for i, st in ts["state"].items():  # the 4 frozen MeanShift parameters have no state, as in torch
        assert js["state"][i].keys() == st.keys()
        assert js["state"][i]["step"].dtype == np.float32 and js["state"][i]["step"].shape == () and st["step"] == 2
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(js["state"][i][k], st[k], atol=1e-6, rtol=1e-4)

    # resume: torch's state into a fresh jittor optimizer, jittor's into a fresh torch one
    sd = T.state_dict_numpy(tnet)
    t2, j2 = registry.make(SPECS["liif"], T), registry.make(SPECS["liif"], J)
    T.load_state_dict_numpy(t2, sd)
    J.load_state_dict_numpy(j2, sd)
    J.load_state_dict_numpy(jnet, sd)
    topt2, jopt2 = T.adam(t2, 5.0), J.adam(j2, 5.0)  # lr comes from the loaded state
    T.load_optimizer_state_numpy(topt2, js)
    J.load_optimizer_state_numpy(jopt2, ts)
    J.load_optimizer_state_numpy(jopt, ts)
    assert J.optimizer_state_numpy(jopt2)["param_groups"] == ts["param_groups"]
    for batch in batches[2:]:
        grads = _torch_grads(tnet, batch)
        losses = [train_step(T, tnet, topt, batch), train_step(T, t2, topt2, batch),
                  train_step(J, j2, jopt2, batch), train_step(J, jnet, jopt, batch)]
        assert max(losses) - min(losses) <= 1e-6 * losses[0]
        for t_net in (tnet, t2):
            for j_net in (j2, jnet):
                _assert_params_close(t_net, j_net, grads, 1e-3, 4)
    J.set_lr(jopt, 0.5)
    assert J.optimizer_state_numpy(jopt)["param_groups"][0]["lr"] == 0.5
    with pytest.raises(ValueError, match="doesn't match the size"):
        J.load_optimizer_state_numpy(J.adam(registry.make(SPECS["liif-d"], J), 1e-3), ts)


def test_chunked_upscale_matches_torch(fixtures_dir):
    """upscale writes each chunk into a preallocated output on the device: 8 chunks on Jittor give
    torch's single-chunk image."""
    path = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    lr = np.random.default_rng(0).integers(0, 256, (11, 9, 3), dtype=np.uint8)
    want = liif.load_model(path, framework="torch", device="cpu").upscale(lr, (25, 19), bsize=10**6)
    np.testing.assert_array_equal(liif.load_model(path, framework="jittor", device="cpu").upscale(lr, (25, 19), bsize=60), want)


@pytest.mark.slow
def test_float64_models_and_training_agree_far_below_float32_noise():
    """In float64 the two backends' differing summation orders cost ~1e-16 instead of ~1e-7, so
    outputs and 30 L1/Adam steps (which amplify float32 noise past 1e-3 within ~50 steps, see
    docs/alignment.md) must agree to ~1e-12: the arithmetic itself is the same."""
    for key in ("liif", "liif-e", "metasr"):
        tmodel, jmodel = pair(SPECS[key], seed=5)
        tmodel.net, jmodel.net = T.to_dtype(tmodel.net, "float64"), J.to_dtype(jmodel.net, "float64")
        assert {str(v.dtype) for v in J.state_dict_numpy(jmodel.net).values()} == {"float64"}
        rng = np.random.default_rng(6)
        inp = rng.uniform(-1, 1, (1, 3, 7, 9)).astype(np.float32)
        coord, cell = queries(17, 22, 30, rng)
        want = tmodel.query(inp, coord, cell)
        got = jmodel.query(inp, coord, cell, bsize=97)
        assert want.dtype == got.dtype == np.float32  # the API answers in float32 whatever the model's type
        assert np.abs(got - want).max() <= 1e-6, key  # float32 rounding of float64 results that agree
        outs = []
        for backend, net in ((T, tmodel.net), (J, jmodel.net)):
            like = next(iter(net.parameters()))
            with backend.no_grad():
                outs.append(backend.to_numpy(net(*(backend.tensor(a, like) for a in (inp, coord, cell)))))
        tnet_out, jnet_out = outs
        assert tnet_out.dtype == jnet_out.dtype == np.float64
        assert np.abs(tnet_out - jnet_out).max() <= 1e-12, key

    tmodel, jmodel = pair(SPECS["liif"], seed=7)
    tnet, jnet = T.to_dtype(tmodel.net, "float64"), J.to_dtype(jmodel.net, "float64")
    topt, jopt = T.adam(tnet, 1e-3), J.adam(jnet, 1e-3)
    rng = np.random.default_rng(8)
    for step in range(30):
        batch = _batch(rng)
        lt, lj = train_step(T, tnet, topt, batch), train_step(J, jnet, jopt, batch)
        assert abs(lt - lj) <= 1e-12 * lt, step  # measured <= 7e-14; float32 Adam constants gave 1e-10
    for k, v in T.state_dict_numpy(tnet).items():
        np.testing.assert_allclose(J.state_dict_numpy(jnet)[k], v, rtol=0, atol=1e-9, err_msg=k)
    J.load_state_dict_numpy(jnet, T.state_dict_numpy(tnet))  # loading keeps the model's float64 (and its values)
    for k, v in T.state_dict_numpy(tnet).items():
        assert J.state_dict_numpy(jnet)[k].dtype == np.float64 and np.array_equal(J.state_dict_numpy(jnet)[k], v), k


# --- checkpoint files ----------------------------------------------------------------------------

def test_checkpoints_cross_backends(tmp_path, fixtures_dir):
    """An original checkpoint through jittor's writer loads in torch (and back) with identical outputs."""
    jmodel = liif.load_model(str(fixtures_dir / "ckpt_edsr-baseline-metasr.pth"), framework="jittor", device="cpu")
    path = str(tmp_path / "from-jittor.pth")
    checkpoint.write(checkpoint.envelope(jmodel.spec, J.state_dict_numpy(jmodel.net), epoch=7,
                                         extra={"framework": "jittor"}), path)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 7 and raw["liif"] == {"framework": "jittor"}
    tmodel = liif.load_model(path, framework="torch", device="cpu")
    rng = np.random.default_rng(6)
    inp = rng.uniform(-1, 1, (1, 3, 6, 7)).astype(np.float32)
    coord, cell = queries(11, 13, 20, rng)
    np.testing.assert_allclose(jmodel.query(inp, coord, cell), tmodel.query(inp, coord, cell), atol=1e-5, rtol=1e-5)
    again = str(tmp_path / "from-torch.pth")
    checkpoint.write(checkpoint.read(path), again)
    back, own = checkpoint.read(again)["model"]["sd"], J.state_dict_numpy(jmodel.net)
    assert list(back) == list(own)
    for k in own:
        np.testing.assert_array_equal(back[k], own[k])


@pytest.mark.slow
def test_checkpoint_read_and_load_model_with_torch_blocked(tmp_path, fixtures_dir):
    legacy = str(tmp_path / "legacy.pth")
    torch.save({"model": {"name": "mlp", "args": {"in_dim": 4, "out_dim": 2, "hidden_list": [3]},
                          "sd": registry.make({"name": "mlp", "args": {"in_dim": 4, "out_dim": 2, "hidden_list": [3]}},
                                              T).state_dict()}}, legacy, _use_new_zipfile_serialization=False)
    ckpt = str(fixtures_dir / "ckpt_edsr-baseline-liif-u.pth")
    script = f"""
import sys, json
sys.modules["torch"] = None  # any `import torch` now fails
import numpy as np
import liif
from liif.models import checkpoint
out = {{}}
for path in ({ckpt!r}, {legacy!r}):
    sd = checkpoint.read(path)["model"]["sd"]
    out[path] = {{k: float(np.asarray(v, np.float64).sum()) for k, v in sd.items()}}
m = liif.load_model({ckpt!r}, framework="jittor", device="cpu")
out["n"] = len(m.net.state_dict())
print("RESULT" + json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    got = json.loads(lines[0][len("RESULT"):])
    for path in (ckpt, legacy):
        want = torch.load(path, weights_only=True)["model"]["sd"]
        assert got[path] == pytest.approx({k: float(v.double().sum()) for k, v in want.items()}, rel=1e-12, abs=0)
    assert got["n"] == len(torch.load(ckpt, weights_only=True)["model"]["sd"])


def test_srun_tasks_without_mpi_are_refused_not_trained_alone_into_one_folder(monkeypatch):
    """`srun -n 2 python run.py framework=jittor`: Jittor forms a group only under MPI, so each task would
    train alone into the same folder; one line says how to start them instead. One task is a plain run."""
    from liif.errors import FrameworkError
    for name, value in {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
                        "SLURM_STEP_NODELIST": "vm", "SLURM_JOB_ID": "5"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(FrameworkError, match="^[^\n]*mpirun -np N python run.py framework=jittor[^\n]*$"):
        J.distributed_init()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert J.distributed_init() == (0, 1)
