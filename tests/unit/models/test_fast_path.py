"""The fast LIIF decoding (issue 6) computes what the reference `decode_reference` computes.

`LIIF.decode` (the default, inference and training) applies the feature part of the
decoder's first Linear once per latent position and gathers it; `decode_reference` is the
original's formulation. They must agree to float rounding everywhere: the original
checkpoints on every case, random weights for every flag combination and decoder depth,
ties, coordinates outside [-1, 1], and gradients.
"""
import itertools

import numpy as np
import pytest
import torch

import liif
from liif.models import registry
from liif.inference.api import Model
from liif.backends import torch as T
from liif.coords import make_coord
from liif.models.liif import LIIF
from liif.training.step import train_step

LIIF_VARIANTS = ["edsr-baseline-liif", "edsr-baseline-liif-c", "edsr-baseline-liif-u", "edsr-baseline-liif-e",
                 "edsr-baseline-liif-d"]


def reference(model):
    """`model` (a liif.inference.api.Model) switched to the reference formulation (an instance attribute)."""
    model.net.decode = model.net.decode_reference
    return model


def fast(model):
    model.net.__dict__.pop("decode", None)
    return model


def tiny_spec(hidden=(16, 16), n_feats=8, **flags):
    return {"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": n_feats, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}}, **flags}}


def build(spec, seed=0):
    torch.manual_seed(seed)
    net = registry.make(spec, T)
    # non-zero biases everywhere (torch's default init already is), a wider weight range than init
    with torch.no_grad():
        for p in net.imnet.parameters():
            p.mul_(3)
    return Model(net, T, spec, "cpu")


def grid(h, w, n=1):
    coord = np.repeat(make_coord((h, w))[None], n, 0)
    cell = np.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / h, 2 / w
    return coord, cell


def both(model, inp, coord, cell, bsize=30000):
    want = reference(model).query(inp, coord, cell, bsize=bsize)
    got = fast(model).query(inp, coord, cell, bsize=bsize)
    return got, want


# --- the original checkpoints ---------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(fixtures_dir):
    return np.load(fixtures_dir / "inputs.npz")


@pytest.mark.parametrize("variant", LIIF_VARIANTS)
def test_original_checkpoints_every_case(variant, fixtures_dir, inputs):
    """Every case, on every tie-sensitive query and an even spread of the others (test_models_fixtures
    runs the default path, i.e. the fast one, on all queries against the original's outputs)."""
    net = liif.load_model(str(fixtures_dir / f"ckpt_{variant}.pth"), framework="torch", device="cpu").net.eval()
    out = np.load(fixtures_dir / f"out_{variant}.npz")
    cases = [k[len("pred_"):] for k in out.files if k.startswith("pred_")]
    assert len(cases) >= 6
    with torch.no_grad():
        latent = net.encode(torch.from_numpy(inputs["inp_norm"]))  # once: the encoder is the same for every case
        for case in cases:
            q = inputs[f"coord_{case}"].shape[1]
            ties = np.flatnonzero(out[f"tie_{case}"]) if f"tie_{case}" in out.files else np.zeros(0, int)
            idx = np.union1d(np.arange(0, q, max(1, q // 2000)), ties)
            coord, cell = (torch.from_numpy(np.ascontiguousarray(inputs[f"{k}_{case}"][:, idx])) for k in ("coord", "cell"))
            got = net.decode(latent, coord, cell).numpy()
            want = net.decode_reference(latent, coord, cell).numpy()
            assert np.abs(got - want).max() <= 1e-5, (variant, case)
            assert np.abs(got - out[f"pred_{case}"][:, idx]).max() <= 1e-5, (variant, case)


# --- random weights: every flag combination and decoder depth ---------------------------------

FLAGS = [dict(feat_unfold=u, local_ensemble=e, cell_decode=c) for u, e, c in itertools.product([True, False], repeat=3)]
HIDDEN = [(256, 256), (24,), (16, 16, 16), ()]


def random_queries(rng, h, w, n):
    """Non-integer and non-square grids, random points (some outside [-1, 1]), the corners,
    points exactly on latent-cell borders and centres (ties without the ensemble), varied cells."""
    coords, cells = [], []
    for oh, ow in [(int(h * 2.7), int(w * 1.3)), (h, w), (2 * h + 1, 3 * w)]:
        c, s = grid(oh, ow, n)
        coords.append(c), cells.append(s)
    m = 300
    pts = rng.uniform(-1.25, 1.25, (n, m, 2)).astype(np.float32)
    border_r = (-1 + 2 * rng.integers(0, h + 1, (n, m)) / h).astype(np.float32)
    border_c = (-1 + 2 * rng.integers(0, w + 1, (n, m)) / w).astype(np.float32)
    centre_c = (-1 + (2 * rng.integers(0, w, (n, m)) + 1) / w).astype(np.float32)
    ties = np.stack([np.stack([border_r, pts[..., 1]], -1), np.stack([pts[..., 0], border_c], -1),
                     np.stack([border_r, border_c], -1), np.stack([border_r, centre_c], -1)], 1).reshape(n, 4 * m, 2)
    corners = np.array([[a, b] for a in (-1, 0, 1) for b in (-1, 0, 1)], np.float32)[None].repeat(n, 0)
    coords += [pts, ties, corners]
    for c in coords[3:]:
        cells.append(rng.uniform(0.01, 0.6, c.shape).astype(np.float32))
    return np.concatenate(coords, 1), np.concatenate(cells, 1)


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: "h" + "-".join(map(str, h)) if h else "h-none")
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "".join(k[0] if v else "_" for k, v in f.items()))
def test_random_weights_every_flag_combination(flags, hidden):
    model = build(tiny_spec(hidden, **flags))
    rng = np.random.default_rng(len(hidden) + 7 * sum(flags.values()))
    h, w, n = 7, 10, 2
    inp = rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)
    coord, cell = random_queries(rng, h, w, n)
    got, want = both(model, inp, coord, cell, bsize=1000)
    assert np.abs(want).max() > 0.1  # not a degenerate model
    assert np.abs(got - want).max() <= 1e-5


def test_no_imnet_keeps_its_nearest_path():
    spec = {"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {
        "n_resblocks": 1, "n_feats": 8, "scale": 2}}}}
    torch.manual_seed(0)
    model = Model(registry.make(spec, T), T, spec, "cpu")
    rng = np.random.default_rng(0)
    inp = rng.uniform(-1, 1, (1, 3, 5, 6)).astype(np.float32)
    coord, cell = grid(13, 17)
    got, want = both(model, inp, coord, cell)
    np.testing.assert_array_equal(got, want)


def test_table_built_in_row_blocks_is_the_same(monkeypatch):
    """A large input's latent table is built a few rows at a time (bounded memory): same result."""
    rng = np.random.default_rng(3)
    for flags, k in (({}, 8 * 9), ({"feat_unfold": False}, 8)):
        model = build(tiny_spec(**flags))
        inp = rng.uniform(-1, 1, (2, 3, 11, 9)).astype(np.float32)
        coord, cell = random_queries(rng, 11, 9, 2)
        whole = fast(model).query(inp, coord, cell)
        for rows in (1, 2, 4):
            monkeypatch.setattr(LIIF, "TABLE_BLOCK", 1 * k * 9 * rows)  # n * k * w * rows (one image at a time)
            written = []  # each block is written into the one table, then materialised
            monkeypatch.setattr(T, "materialize", lambda t, _m=T.materialize: written.append(tuple(t.shape)) or _m(t))
            blocked = model.query(inp, coord, cell)
            monkeypatch.undo()
            tables = [shape for shape in written if shape == (1, 16, 11, 9)]  # the first layer's width: 16
            # per image (Model.query encodes each alone): one per block, and the engine's of the finished latent
            assert len(tables) == len(inp) * (-(-11 // rows) + 1)
            np.testing.assert_allclose(blocked, whole, atol=1e-6, rtol=0)


# --- gradients --------------------------------------------------------------------------------

def grads_of(net, inp, coord, cell, gt, path):
    net.train()
    net.zero_grad()
    if path == "reference":
        net.decode = net.decode_reference
    else:
        net.__dict__.pop("decode", None)
    loss = (net(inp, coord, cell) - gt).abs().mean()
    loss.backward()
    net.__dict__.pop("decode", None)
    return loss.item(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("flags", [{}, {"local_ensemble": False}, {"feat_unfold": False, "cell_decode": False}],
                         ids=["default", "no-ensemble", "no-unfold-no-cell"])
def test_gradients_equal(flags):
    model = build(tiny_spec(hidden=(32, 32), n_feats=16, **flags))
    net = model.net
    rng = np.random.default_rng(5)
    n, h, w, q = 3, 8, 8, 200
    inp = torch.from_numpy(rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32))
    coord = torch.from_numpy(rng.uniform(-1, 1, (n, q, 2)).astype(np.float32))
    cell = torch.from_numpy(rng.uniform(0.05, 0.5, (n, q, 2)).astype(np.float32))
    gt = torch.from_numpy(rng.uniform(-1, 1, (n, q, 3)).astype(np.float32))
    loss_r, ref = grads_of(net, inp, coord, cell, gt, "reference")
    loss_f, got = grads_of(net, inp, coord, cell, gt, "fast")
    assert abs(loss_f - loss_r) <= 1e-6 * abs(loss_r)
    assert set(got) == set(ref) and any(k.startswith("encoder.") for k in ref) and "imnet.layers.0.weight" in ref
    for k in ref:
        scale = ref[k].abs().max().item()
        assert scale > 0, k
        err = (got[k] - ref[k]).abs().max().item()
        assert err <= 1e-5 * scale + 1e-9, f"{k}: {err} vs max |grad| {scale}"


def test_official_training_step_gradients(fixtures_dir):
    """The fixture's training step (default model, one 48x48 sample, 2304 queries): the fast path's
    gradients are the original's."""
    data, ref = np.load(fixtures_dir / "data_pipeline.npz"), np.load(fixtures_dir / "train_step.npz")
    model = liif.load_model(str(fixtures_dir / "ckpt_edsr-baseline-liif.pth"), device="cpu")
    batch = [torch.from_numpy(np.ascontiguousarray(a)) for a in (
        ((data["train_inp"] - 0.5) / 0.5)[None], data["train_coord"][None], data["train_cell"][None],
        ((data["train_gt"] - 0.5) / 0.5)[None])]
    loss, got = grads_of(model.net, *batch, "fast")
    loss_r, want = grads_of(model.net, *batch, "reference")
    assert abs(loss - float(ref["loss"])) <= 1e-6 * loss and abs(loss - loss_r) <= 1e-6 * loss
    for k in want:
        err = (got[k] - want[k]).abs().max().item()
        assert err <= 1e-5 * want[k].abs().max().item() + 1e-9, k
    for key in ref.files:
        if key.startswith("grad/"):
            # the reference itself is ~5e-5 (relative) from the recorded gradients: summation order
            original = ref[key]
            err = np.abs(got[key[len("grad/"):]].numpy() - original).max()
            assert err <= 1e-4 * np.abs(original).max(), key


# --- which path runs ----------------------------------------------------------------------------

def test_fast_path_is_the_default_for_query_upscale_forward_and_training():
    model = build(tiny_spec())
    net = model.net
    calls = {"fast": 0, "reference": 0}

    def counting(name, method):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return wrapped

    net._decode_fast = counting("fast", net._decode_fast)
    net.decode_reference = counting("reference", net.decode_reference)
    rng = np.random.default_rng(0)
    inp = rng.uniform(-1, 1, (1, 3, 6, 7)).astype(np.float32)
    coord, cell = grid(12, 14)
    model.query(inp, coord, cell, bsize=50)
    assert calls == {"fast": 4, "reference": 0}  # 168 queries in chunks of 50
    model.upscale(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8), (9, 11))
    assert calls == {"fast": 5, "reference": 0}
    net(torch.from_numpy(inp), torch.from_numpy(coord), torch.from_numpy(cell))
    assert calls == {"fast": 6, "reference": 0}
    batch = {"inp": inp, "coord": coord, "cell": cell, "gt": np.zeros(coord.shape[:2] + (3,), np.float32)}
    net.train()
    train_step(T, net, T.adam(net, 1e-4), batch)
    assert calls == {"fast": 7, "reference": 0}


def test_latent_table_built_once_per_encoding_and_shared_by_its_chunks():
    model = build(tiny_spec())
    net = model.net
    builds = []
    build_table = net._latent_table
    net._latent_table = lambda *a, **k: builds.append(1) or build_table(*a, **k)
    rng = np.random.default_rng(0)
    inp = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 6, 7)).astype(np.float32))
    coord, cell = (torch.from_numpy(a) for a in grid(12, 14))
    net.eval()
    with torch.no_grad():
        latent = net.encode(inp)
        assert builds == [1] and latent["table"].shape == (1, 16, 6, 7)  # the first layer's width: 16
        a = net.decode(latent, coord[:, :50], cell[:, :50])
        b = net.decode(latent, coord, cell)
        assert builds == [1]  # the chunks read the encoding's table
        torch.testing.assert_close(a, b[:, :50], atol=0, rtol=0)
        other = net.encode(inp * 0.5)
        assert builds == [1, 1] and not torch.equal(other["table"], latent["table"])
    net.train()
    net(inp, coord, cell)
    assert builds == [1, 1, 1]  # training: one per forward (gradients flow through it)


# --- jittor ---------------------------------------------------------------------------------------

@pytest.mark.jittor
@pytest.mark.parametrize("variant", ["edsr-baseline-liif", "edsr-baseline-liif-e", "edsr-baseline-liif-u"])
def test_jittor_fast_path_equals_torch_reference(variant, fixtures_dir, inputs):
    import importlib.util
    if importlib.util.find_spec("jittor") is not None:
        from liif.backends import jittor_setup
        jittor_setup.import_jittor()  # jittor's environment defaults must precede its first import
    pytest.importorskip("jittor")
    path = str(fixtures_dir / f"ckpt_{variant}.pth")
    want_model = reference(liif.load_model(path, framework="torch", device="cpu"))
    jmodel = liif.load_model(path, framework="jittor", device="cpu")
    calls = []
    jmodel.net._decode_fast = (lambda f: lambda *a: calls.append(1) or f(*a))(jmodel.net._decode_fast)
    out = np.load(fixtures_dir / f"out_{variant}.npz")
    coords, cells = [], []
    for case in ("x3.7", "nonsquare", "offgrid"):  # every tie-sensitive query (-e) and a spread of the others
        q = inputs[f"coord_{case}"].shape[1]
        idx = np.union1d(np.arange(0, q, max(1, q // 1000)), np.flatnonzero(out[f"tie_{case}"]))
        coords.append(inputs[f"coord_{case}"][:, idx]), cells.append(inputs[f"cell_{case}"][:, idx])
    coord, cell = np.concatenate(coords, 1), np.concatenate(cells, 1)
    want = want_model.query(inputs["inp_norm"], coord, cell)
    got = jmodel.query(inputs["inp_norm"], coord, cell, bsize=2000)
    assert np.abs(got - want).max() <= 1e-5, variant
    assert calls
