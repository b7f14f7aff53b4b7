"""The speed options (issue 6, "GPU speed") on the CPU: bf16 autocast (training, and the inference
opt-in) is close to float32; channels_last and torch.compile equal the default path to float rounding;
prefetching changes no loss; the decoding loop copies back to the host once; Jittor rejects what it
does not have. The tolerances are the measured error with a margin, see each test."""
import importlib.util
import threading
import time

import numpy as np
import pytest
import torch

import liif
from conftest import compose, run_task_with_overrides, typed
from liif.models import registry
from liif.inference.api import Model
from liif.backends import torch as T
from liif.coords import make_coord
from liif.data.loader import prefetch
from liif.training.trainer import Trainer
from liif.training.step import train_step


def tiny_spec(name="liif", **flags):
    encoder = {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 8, "no_upsampling": True}}
    if name == "metasr":
        return {"name": "metasr", "args": {"encoder_spec": encoder}}
    return {"name": "liif", "args": {"encoder_spec": encoder, **flags,
                                     "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}}}


def build(spec, precision="fp32", **options):
    """The same seeded weights whatever the options."""
    torch.manual_seed(0)
    return Model(T.optimize(registry.make(spec, T), **options), T, spec, "cpu", precision)


def queries(h, w):
    coord = make_coord((h, w))[None]
    cell = np.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / h, 2 / w
    return coord, cell


def image(h=11, w=9, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)


def batches(n_batches=3, n=2, side=10, q=64, seed=0):
    """Normalised training batches: random LR patches, queries on a x1-x3 grid, random targets."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        hr = int(side * rng.uniform(1, 3))
        coord = np.stack([make_coord((hr, hr))[rng.choice(hr * hr, q, replace=False)] for _ in range(n)])
        out.append({"inp": rng.uniform(-1, 1, (n, 3, side, side)).astype(np.float32), "coord": coord,
                    "cell": np.full((n, q, 2), 2 / hr, np.float32), "gt": rng.uniform(-1, 1, (n, q, 3)).astype(np.float32)})
    return out


def train_losses(model, precision="fp32"):
    model.net.train()
    opt = T.adam(model.net, 1e-3)
    losses = [train_step(T, model.net, opt, b, precision) for b in batches()]
    model.net.eval()
    return losses


def reference(model):
    model.net.decode = model.net.decode_reference  # an instance attribute, as tests/unit/models/test_fast_path.py
    return model


# --- bf16 -------------------------------------------------------------------------------------

def test_bf16_training_steps_are_within_1_percent_of_fp32():
    """Measured: the three losses differ by 1e-6 to 3e-5 (relative; the L1 mean averages the bf16
    rounding errors, 2^-9 each, out); 1% is asserted. The weights stay float32."""
    fp32, bf16 = build(tiny_spec()), build(tiny_spec())
    want, got = train_losses(fp32), train_losses(bf16, "bf16")
    assert got != want  # the autocast did run
    np.testing.assert_allclose(got, want, rtol=0.01)
    assert all(p.dtype == torch.float32 for p in bf16.net.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("variant, rel, levels", [("edsr-baseline-liif", 0.01, 1), ("edsr-baseline-metasr", 0.03, 6)])
def test_bf16_inference_is_close_to_fp32(variant, rel, levels, fixtures_dir):
    """The original checkpoints (random weights) on the top-left 24x24 of the fixture's input, queried
    at the fixture's x2 and x12 points. Measured: the largest error is 0.49% (LIIF) and 0.87% (MetaSR:
    its decoder predicts per-query weights that a bf16 matmul then applies) of the largest output
    (0.47% and 1.2% on the whole 48x48), and 1 and 5 uint8 levels on an upscale; asserted: `rel` and
    `levels`. The PSNR cost on a trained model: docs/benchmarks.md."""
    inputs = np.load(fixtures_dir / "inputs.npz")
    path = str(fixtures_dir / f"ckpt_{variant}.pth")
    fp32 = liif.load_model(path, framework="torch", device="cpu")
    bf16 = liif.load_model(path, framework="torch", device="cpu", precision="bf16")
    # a quarter of the input, and the x2 and x12 queries in one call: bf16 convolutions are slow on a CPU
    inp = np.ascontiguousarray(inputs["inp_norm"][:, :, :24, :24])
    coord, cell = (np.concatenate([inputs[f"{name}_x2"], inputs[f"{name}_x12"]], axis=1) for name in ("coord", "cell"))
    want, got = fp32.query(inp, coord, cell), bf16.query(inp, coord, cell)
    assert got.dtype == np.float32 and got.shape == want.shape
    for case in (slice(0, inputs["coord_x2"].shape[1]), slice(inputs["coord_x2"].shape[1], None)):  # x2, x12
        assert not np.array_equal(got[:, case], want[:, case])  # the autocast did run
        assert np.abs(got[:, case] - want[:, case]).max() <= rel * np.abs(want[:, case]).max()
    lr = inputs["lr_uint8"][:16, :16]
    diff = bf16.upscale(lr, (40, 40)).astype(int) - fp32.upscale(lr, (40, 40))
    assert np.abs(diff).max() <= levels


def test_an_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown precision 'fp16'; use fp32 or bf16"):
        liif.build_model(tiny_spec(), device="cpu", precision="fp16")


# --- channels_last ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [{}, {"feat_unfold": False}, {"local_ensemble": False}, {"cell_decode": False},
                                   {"name": "metasr"}], ids=["liif", "-u", "-e", "-c", "metasr"])
def test_channels_last_equals_the_default_layout(flags):
    spec = tiny_spec(**flags)
    default, nhwc = build(spec), build(spec, channels_last=True)
    feat = nhwc.net.encode(T.tensor(image()))["feat"]
    assert feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous()  # it took effect
    a, b = T.state_dict_numpy(default.net), T.state_dict_numpy(nhwc.net)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)  # the same checkpoint
    coord, cell = queries(25, 19)
    paths = [lambda m: m] if spec["name"] == "metasr" else [lambda m: m, reference]  # fast, then reference
    for path in paths:
        want = path(default).query(image(), coord, cell, bsize=100)
        np.testing.assert_allclose(path(nhwc).query(image(), coord, cell, bsize=100), want, rtol=0, atol=1e-5)


def test_channels_last_training_steps_equal_the_default_layout():
    default, nhwc = build(tiny_spec()), build(tiny_spec(), channels_last=True)
    np.testing.assert_allclose(train_losses(nhwc), train_losses(default), rtol=0, atol=1e-5)
    for k, v in T.state_dict_numpy(default.net).items():
        np.testing.assert_allclose(T.state_dict_numpy(nhwc.net)[k], v, rtol=0, atol=1e-5)


# --- torch.compile ------------------------------------------------------------------------------

@pytest.mark.slow
def test_compile_equals_eager():
    """Measured on the 2-core CPU: 82 s (load average 7: other jobs shared the cores), nearly all of it
    compiling: the inference (encoder + decoder) about 30 s, a second input size 15 s more (then the
    shapes are dynamic), and the training step's forward and backward."""
    spec = tiny_spec()
    eager, compiled = build(spec), build(spec, compile=True)
    assert list(T.state_dict_numpy(compiled.net)) == list(T.state_dict_numpy(eager.net))  # no `_orig_mod.` keys
    coord, cell = queries(25, 19)
    started = time.perf_counter()
    for h, w in [(11, 9), (7, 13)]:
        got = compiled.query(image(h, w), coord, cell, bsize=100)  # several chunks, the last one shorter
        np.testing.assert_allclose(got, eager.query(image(h, w), coord, cell, bsize=100), rtol=0, atol=1e-5)
    np.testing.assert_allclose(train_losses(compiled), train_losses(eager), rtol=0, atol=1e-5)
    print(f"compile + run: {time.perf_counter() - started:.1f} s")
    assert {"encode", "decode"} <= set(compiled.net.__dict__)  # the compiled functions are what ran


# --- the decoding loop ----------------------------------------------------------------------------

def test_chunked_decoding_copies_back_once():
    """Chunk results stay on the device: one device-to-host copy per call (a GPU is never waited for per
    chunk), and the result is bit for bit that of a single chunk."""
    copies = []

    class Counting:  # the torch backend, counting its copies to the host
        def __getattr__(self, name):
            return getattr(T, name)

        def to_numpy(self, t):
            copies.append(tuple(t.shape))
            return T.to_numpy(t)

    model = build(tiny_spec())
    counted = Model(model.net, Counting(), model.spec, "cpu")
    coord, cell = queries(25, 19)
    whole = model.query(image(), coord, cell, bsize=10**6)
    np.testing.assert_array_equal(counted.query(image(), coord, cell, bsize=60), whole)  # 8 chunks
    assert copies == [(1, 25 * 19, 3)]
    lr = np.random.default_rng(0).integers(0, 256, (11, 9, 3), dtype=np.uint8)
    copies.clear()
    np.testing.assert_array_equal(counted.upscale(lr, (25, 19), bsize=60), model.upscale(lr, (25, 19), bsize=10**6))
    assert copies == [(25 * 19, 3)]


# --- batches: prefetching and the copy to the device -----------------------------------------------

def test_prefetch_keeps_the_order_runs_ahead_in_a_thread_and_cleans_up():
    closed, threads = [], set()

    def numbers():
        try:
            yield from range(5)
        finally:
            closed.append(True)

    def prepare(i):
        threads.add(threading.get_ident())
        return i * 10

    assert list(prefetch(numbers(), prepare)) == [0, 10, 20, 30, 40]
    assert threads and threading.get_ident() not in threads and closed == [True]
    early = prefetch(numbers(), prepare)
    assert next(early) == 0
    early.close()  # the consumer stops early (max_steps_per_epoch, a signal): the source is closed
    assert closed == [True, True]

    def fails(i):
        if i == 2:
            raise ValueError("bad batch 2")
        return i

    with pytest.raises(ValueError, match="bad batch 2"):
        list(prefetch(numbers(), fails))


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data") / "sample")


TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.batch_size=2", "train.inp_size=16",
        "train.sample_q=64", "train.max_steps_per_epoch=3", "train.epochs=2", "train.epoch_val=1",
        "dataset.val.repeat=1", "framework.threads=1"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_prefetching_changes_no_loss(sample_dir, tmp_path, workers):
    losses = {}
    for on in (False, True):
        out = tmp_path / str(on)
        trainer = Trainer.from_config(typed(f"paths.sample_dir={sample_dir}", *TINY, f"train.num_workers={workers}",
                                            f"train.prefetch={on}", f"output_dir={out}"), str(out))
        assert trainer.fit() is None
        losses[on] = trainer.step_losses, [row["val_psnr"] for row in trainer.history]
    assert len(losses[True][0]) == 6 and losses[True] == losses[False]  # bit for bit


def test_batch_to_device_on_the_cpu():
    """pin_memory is for CUDA only: on the CPU the same tensors (pinning would need a GPU), and a
    prepared batch trains exactly like the numpy one."""
    batch = batches()[0]
    like = torch.zeros(1)
    ready = T.batch_to_device(batch, like, pin_memory=True)
    assert all(torch.equal(ready[k], torch.from_numpy(v)) and not ready[k].is_pinned() for k, v in batch.items())
    a, b = build(tiny_spec()), build(tiny_spec())
    assert train_step(T, a.net, T.adam(a.net, 1e-3), batch) == train_step(T, b.net, T.adam(b.net, 1e-3), ready)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu():
    batch = batches()[0]
    ready = T.batch_to_device(batch, torch.zeros(1, device="cuda"), pin_memory=True)
    assert all(ready[k].is_cuda and np.array_equal(T.to_numpy(ready[k]), v) for k, v in batch.items())
    cpu, gpu = build(tiny_spec()), build(tiny_spec())
    gpu.net, gpu.device = gpu.net.cuda(), "cuda"
    coord, cell = queries(25, 19)
    # 1e-3: cuDNN may run float32 convolutions in TF32 (torch's default for them)
    np.testing.assert_allclose(gpu.query(image(), coord, cell, bsize=100), cpu.query(image(), coord, cell), atol=1e-3)
    np.testing.assert_allclose(train_losses(gpu, "bf16"), train_losses(cpu), rtol=0.01)


# --- Jittor: the defaults only ----------------------------------------------------------------

@pytest.mark.jittor
def test_jittor_rejects_the_pytorch_options():
    if importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")
    from liif.backends import jittor_setup
    jittor_setup.import_jittor()  # jittor's environment defaults must precede its first import
    with pytest.raises(ValueError, match="framework=jittor runs in float32 only"):
        liif.build_model(tiny_spec(), framework="jittor", device="cpu", precision="bf16")
    for option in ("channels_last", "compile"):
        with pytest.raises(ValueError, match="framework=jittor has no channels_last or compile option"):
            liif.build_model(tiny_spec(), framework="jittor", device="cpu", **{option: True})


@pytest.mark.slow
@pytest.mark.jittor
def test_jittor_rejects_bf16_training_in_one_line(tmp_path):
    """task=train, the CLI's path after composition (in process)."""
    if importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")
    status, err = run_task_with_overrides(compose("framework=jittor", "framework.precision=bf16", *TINY, "device=cpu",
                                                  f"paths.sample_dir={tmp_path / 'sample'}"), f"output_dir={tmp_path / 'run'}")
    assert status == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: framework=jittor runs in float32 only, not precision 'bf16'"), err
