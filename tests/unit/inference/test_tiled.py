"""Tiled inference (liif/inference/tiled.py) gives the untiled output, on every model, at borders, seams,
non-square inputs, inputs smaller than a tile and every scale; budgets and their errors.

"Untiled" here is the pre-tiling computation written out (`untiled_query`: the encoder on the
whole input, the decoder on every query), not the engine with one tile. Random small weights
and tiny tiles (2-5 input pixels), so that nearly every query is near a seam.
"""
import itertools

import numpy as np
import pytest
import torch

from conftest import SKIP_WITHOUT_JITTOR, slow_case

import liif
from liif.inference import tiled
from liif.models import registry
from liif.inference.api import Model
from liif.backends import torch as T
from liif.coords import make_coord
from liif.errors import BudgetTooSmall, NotEnoughMemory

MLP = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}


def encoder(name, upsample=None):
    """Smoke-size encoders (conf/profile/encoder/smoke_*.yaml); upsample: the fixed-scale baselines' scale."""
    args = {"no_upsampling": upsample is None, "scale": upsample or 2}
    if name == "rdn":
        return {"name": "rdn", "args": {"G0": 8, "RDNconfig": "T", **args}}
    return {"name": name, "args": {"n_resblocks": 2, "n_feats": 8, **args}}


def liif_spec(enc="edsr-baseline", **flags):
    return {"name": "liif", "args": {"encoder_spec": encoder(enc), "imnet_spec": MLP, **flags}}


@pytest.fixture(autouse=True)
def one_thread():
    """Hundreds of tiny tiles: with 2 OpenMP threads on a shared 2-core machine each tiny convolution
    waits on the other thread (measured: 5 ms instead of 0.03 ms per call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(spec, backend=T, seed=0):
    torch.manual_seed(seed)
    net = registry.make(spec, T)  # the default init: outputs of the size of trained ones' (|x| ~ 1)
    if backend is not T:  # the same weights on the other framework
        other = registry.make(spec, backend)
        backend.load_state_dict_numpy(other, T.state_dict_numpy(net))
        net = other
    return Model(net, backend, spec, "cpu")


def untiled_query(model, inp, coord, cell):
    """The whole-input computation, as Model.query did before tiling (one decoder call)."""
    backend, net = model.backend, model.net
    net.eval()
    with backend.no_grad():
        like = next(iter(net.parameters()))
        latent = net.encode(backend.tensor(inp, like=like))
        return backend.to_numpy(net.decode(latent, backend.tensor(coord, like=like), backend.tensor(cell, like=like)))


def image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def normalised(img):
    return (((img.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]).copy()


def grid(H, W):
    coord = make_coord((H, W))[None]
    cell = np.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / H, 2 / W
    return coord, cell


def assert_uint8_matches(sr, pred):
    """uint8 `sr` equals the rounded float `pred` (normalised, (1, H*W, 3)) except where the float
    lies within 1e-5 of a rounding boundary."""
    value = np.clip(pred[0] * 0.5 + 0.5, 0, 1) * 255
    expected = np.round(value).astype(np.uint8).reshape(sr.shape)
    near_boundary = (np.abs(value - np.floor(value) - 0.5) < 1e-5 * 255 / 2).reshape(sr.shape)
    differ = sr != expected
    assert not (differ & ~near_boundary).any(), f"{differ.sum()} uint8 values differ away from a rounding boundary"


# (input h, w, output H, W): x1.3, x4, x12.5, x30, all non-square except one; each input spans
# several 3-pixel tiles, and the 5x7 one is also run below as smaller than one tile
SCALES = {"x1.3": (9, 13, 12, 17), "x4": (11, 9, 44, 36), "x12.5": (8, 6, 100, 75), "x30": (5, 7, 150, 210)}


def check_tiled(model, scales=SCALES, tiles=(2, 3)):
    """query() at every tile size, and upscale() (the same engine, then rounded to uint8) at the first."""
    for name, (h, w, H, W) in scales.items():
        img = image(h, w)
        coord, cell = grid(H, W)
        want = untiled_query(model, normalised(img), coord, cell)
        for tile in tiles:
            got = model.query(normalised(img), coord, cell, tile=tile, bsize=997)
            err = np.abs(got - want).max()
            assert err <= 1e-5, f"{name}, tile {tile}: max abs error {err}"
        assert_uint8_matches(model.upscale(img, (H, W), tile=tiles[0], bsize=997), want)


# --- every model ----------------------------------------------------------------------------

# every flag on and every flag off in the fast tier, the mixed ones in the full suite
FLAGS = [flags if len(set(flags)) == 1 else slow_case(*flags) for flags in itertools.product([True, False], repeat=3)]


@pytest.mark.parametrize("unfold, ensemble, cell", FLAGS, ids=lambda f: str(int(f)))
def test_liif_every_flag_combination(unfold, ensemble, cell):
    check_tiled(build(liif_spec(feat_unfold=unfold, local_ensemble=ensemble, cell_decode=cell)))


@pytest.mark.slow  # EDSR-baseline's LIIF is test_liif_every_flag_combination's every flag on (LIIF's defaults)
@pytest.mark.parametrize("enc", ["edsr", "rdn"])
def test_every_encoder(enc):
    check_tiled(build(liif_spec(enc)))


def test_metasr():
    check_tiled(build({"name": "metasr", "args": {"encoder_spec": encoder("edsr-baseline")}}))


def lte_spec(enc="edsr-baseline"):
    return {"name": "lte", "args": {"encoder_spec": encoder(enc), "imnet_spec": MLP, "hidden_dim": 16}}


@pytest.mark.parametrize("enc", ["edsr-baseline", slow_case("rdn")])
def test_lte(enc):
    """LTE goes through the engine with no code of its own there: only its reach and footprint."""
    check_tiled(build(lte_spec(enc)))


@pytest.mark.parametrize("enc, scale", [("edsr-baseline", 2), ("edsr-baseline", 3), ("edsr-baseline", 4),
                                        slow_case("rdn", 2), slow_case("rdn", 3), slow_case("rdn", 4)])
def test_fixed_scale_baselines(enc, scale):
    check_tiled(build({"name": "liif", "args": {"encoder_spec": encoder(enc, upsample=scale)}}),
                scales={"own scale": (9, 13, 9 * scale, 13 * scale), "x4": (11, 9, 44, 36)})


def test_input_smaller_than_one_tile_and_reference_decoder():
    """A tile larger than the input (one tile, no window), and the reference formulation (which the
    engine reaches through decode) tiled."""
    model = build(liif_spec())
    check_tiled(model, scales={"x30": SCALES["x30"]}, tiles=(64,))
    model.net.decode = model.net.decode_reference
    check_tiled(model, scales={"x4": SCALES["x4"]}, tiles=(3,))


def test_arbitrary_queries_outside_and_on_borders():
    """Queries in any order, on and beyond the image's border (clamped by the model) and exactly on
    latent cell borders; cells of several sizes in one call."""
    model = build(liif_spec())
    img = image(13, 10)
    rng = np.random.default_rng(3)
    coord = rng.uniform(-1.2, 1.2, (1, 3000, 2)).astype(np.float32)
    coord[0, :200, 0] = np.float32(-1) + np.float32(2 / 13) * rng.integers(0, 14, 200).astype(np.float32)
    coord[0, 200:400] = rng.choice([-1, 1], (200, 2))
    cell = rng.uniform(0.01, 0.4, (1, 3000, 2)).astype(np.float32)
    want = untiled_query(model, normalised(img), coord, cell)
    got = model.query(normalised(img), coord, cell, tile=2, bsize=500)
    assert np.abs(got - want).max() <= 1e-5


# --- the original checkpoints ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", ["edsr-baseline-liif", "edsr-baseline-liif-c", "edsr-baseline-liif-u",
                                     "edsr-baseline-liif-e", "edsr-baseline-liif-d", "edsr-baseline-metasr"])
def test_original_checkpoints_tiled(variant, fixtures_dir):
    """Every case of the original code's outputs (ties, off-grid and outside queries included), with
    the 48x48 input in 16x16-pixel tiles (each tile's input is most of the image: the halo is 34),
    encoded once (`cache=True`) for all cases."""
    from liif.inference.tiled import Encoding
    inputs = np.load(fixtures_dir / "inputs.npz")
    out = np.load(fixtures_dir / f"out_{variant}.npz")
    model = liif.load_model(str(fixtures_dir / f"ckpt_{variant}.pth"), device="cpu")
    encoding = Encoding.of_array(model, inputs["inp_norm"][0], tile=16, cache=True)
    for case in [k[len("pred_"):] for k in out.files if k.startswith("pred_")]:
        pred = encoding.query(inputs[f"coord_{case}"][0], inputs[f"cell_{case}"][0])[None]
        err = np.abs(pred - out[f"pred_{case}"]).max()
        assert err <= 1e-5, f"{variant} {case}: max abs error {err}"


@pytest.mark.slow
def test_authors_lte_checkpoint_tiled(fixtures_dir, lte_fixtures_dir):
    """Every case of the LTE authors' outputs (its inputs are LIIF's), through the public API in 16x16 tiles."""
    from liif.inference.tiled import Encoding
    inputs = np.load(fixtures_dir / "inputs.npz")
    out = np.load(lte_fixtures_dir / "out_edsr-baseline-lte.npz")
    model = liif.load_model(str(lte_fixtures_dir / "ckpt_edsr-baseline-lte.pth"), device="cpu")
    encoding = Encoding.of_array(model, inputs["inp_norm"][0], tile=16, cache=True)
    cases = [k[len("pred_"):] for k in out.files if k.startswith("pred_")]
    assert len(cases) >= 6 and encoding.plan().n_tiles == 9
    for case in cases:
        pred = encoding.query(inputs[f"coord_{case}"][0], inputs[f"cell_{case}"][0])[None]
        err = np.abs(pred - out[f"pred_{case}"]).max()
        assert err <= 1e-5, f"lte {case}: max abs error {err}"


# --- exactness's parts -----------------------------------------------------------------------

@pytest.mark.parametrize("spec, halo", [
    ({"name": "edsr-baseline", "args": {"no_upsampling": True}}, 34),  # head + 16 blocks x 2 + body's last conv
    ({"name": "edsr", "args": {"no_upsampling": True}}, 66),           # 32 blocks
    ({"name": "rdn", "args": {"RDNconfig": "B", "no_upsampling": True}}, 131),  # SFE x2 + 16 x 8 + GFF's 3x3
    ({"name": "rdn", "args": {"RDNconfig": "A", "no_upsampling": True}}, 123),  # 20 blocks x 6
    ({"name": "edsr-baseline", "args": {"scale": 4}}, 37),   # + 2 upsampling convs + the tail's last
    ({"name": "rdn", "args": {"RDNconfig": "B", "scale": 3}}, 133),
])
def test_paper_encoders_halos(spec, halo):
    assert registry.make(spec, T).halo == halo


@pytest.mark.parametrize("spec", [encoder("edsr-baseline"), encoder("edsr"), encoder("rdn"),
                                  encoder("edsr-baseline", upsample=2), encoder("rdn", upsample=3)])
def test_halo_is_the_receptive_field(spec):
    """Changing one input pixel `halo` pixels away changes the encoder's output at a pixel (no-upsampling
    encoders: exactly; upsamplers: an upper bound), one pixel farther never does."""
    torch.manual_seed(0)
    enc = registry.make(spec, T).eval()
    halo, s = enc.halo, enc.out_scale
    size = 2 * halo + 5
    x = torch.randn(1, 3, size, size)
    centre = size // 2
    with torch.no_grad():
        base = enc(x)[0, :, centre * s:(centre + 1) * s, centre * s:(centre + 1) * s]
        for distance, changes in ((halo, s == 1), (halo + 1, False)):
            y = x.clone()
            y[0, :, centre - distance, centre] += 10
            out = enc(y)[0, :, centre * s:(centre + 1) * s, centre * s:(centre + 1) * s]
            moved = bool((out - base).abs().max() > 0)
            if changes or not moved:
                assert moved == changes, f"{spec['name']}: a change {distance} pixels away: moved={moved}"


def test_windowed_lookup_is_grid_sample():
    """The window's nearest lookup (the whole map's index, minus the offset) picks grid_sample's cell,
    ties and exact halves included, and gives 0 outside the map."""
    rng = np.random.default_rng(0)
    for h, w, top, left, wh, ww in [(13, 10, 3, 2, 6, 7), (48, 48, 0, 40, 48, 8), (7, 9, 5, 0, 2, 9)]:
        full = torch.from_numpy(rng.standard_normal((1, 4, h, w)).astype(np.float32))
        coord = rng.uniform(-1.1, 1.1, (1, 4000, 2)).astype(np.float32)
        # pixel borders of this map and of a 1.3x finer one: exact ties for the rounding
        coord[0, :1000, 0] = make_coord((int(h * 1.3),))[rng.integers(0, int(h * 1.3), 1000), 0]
        coord[0, 1000:2000, 1] = np.float32(-1) + np.float32(2 / w) * rng.integers(0, w + 1, 1000).astype(np.float32)
        coord = torch.from_numpy(coord)
        want = T.grid_sample_nearest(full, coord)
        got = T.grid_sample_nearest(full[:, :, top:top + wh, left:left + ww].contiguous(), coord, (h, w, top, left))
        rows = torch.round(((coord[0, :, 0] + 1) * h - 1) / 2)
        cols = torch.round(((coord[0, :, 1] + 1) * w - 1) / 2)
        in_window = (rows >= top) & (rows < top + wh) & (cols >= left) & (cols < left + ww)
        assert in_window.sum() > 100
        assert torch.equal(got[0, in_window], want[0, in_window])
        assert (got[0, ~in_window] == 0).all()


# --- budgets ---------------------------------------------------------------------------------

def test_plan_one_tile_when_it_fits_and_tiles_within_the_budget():
    net = build(liif_spec()).net
    whole = tiled.plan(net, 300, 200, max_memory="4GB")
    assert whole.n_tiles == 1 and whole.estimate <= whole.budget
    for budget in (4 << 20, 12 << 20):
        p = tiled.plan(net, 300, 200, max_memory=budget)
        assert p.n_tiles > 1 and p.estimate <= budget
        assert [a for a, _ in p.rows][0] == 0 and p.rows[-1][1] == 300 and p.cols[-1][1] == 200
        assert all(a[1] == b[0] for a, b in zip(p.rows, p.rows[1:]))  # cores cover the input once


def test_budget_too_small_names_the_minimum():
    net = build(liif_spec()).net
    with pytest.raises(BudgetTooSmall, match=r"max_memory=1\.0 KB is too small .* one 16x16 tile with its 6-pixel "
                                             r"halo needs about .*; use max_memory=(\d+)MB or more") as e:
        tiled.plan(net, 300, 200, max_memory="1KB")
    minimum = int(e.value.args[0].rsplit("max_memory=", 1)[1].split("MB")[0])
    assert tiled.plan(net, 300, 200, max_memory=f"{minimum}MB").n_tiles > 1  # the named minimum works
    assert "\n" not in str(e.value)


def test_output_too_large_fails_before_any_work(monkeypatch):
    model = build(liif_spec())
    monkeypatch.setattr(model.net, "encode", lambda *a, **k: pytest.fail("the encoder ran"))
    with pytest.raises(NotEnoughMemory, match="a 200000x300000 output image needs about 167.6 GB"):
        model.upscale(image(4, 4), (200000, 300000))


def test_encoding_cache_encodes_each_tile_once():
    model = build(liif_spec())
    img = image(12, 12)
    calls = []
    encode = model.net.encode
    model.net.encode = lambda inp, **where: calls.append(1) or encode(inp, **where)
    coord, cell = grid(30, 30)
    enc = model.encode(img, tile=6, cache=True)
    first = enc.query(coord[0], cell[0])
    again = enc.query(coord[0][::-1].copy(), cell[0])
    assert len(calls) == 4 and enc.nbytes > 0
    np.testing.assert_array_equal(first[::-1], again)
    np.testing.assert_array_equal(enc.render((30, 30)), model.upscale(img, (30, 30), tile=6))


def test_without_the_cache_one_tiles_latent_is_alive_at_a_time():
    """When the engine encodes a tile, no earlier tile's latent is alive (not cached, it must not be held
    by anything: a loop variable that kept the previous tile's latent raised LIIF's tiled peak by a
    latent, 140 -> 176 MB at 384x384 within 200 MB, benchmarks/bench_tiled.py)."""
    import weakref
    model = build(liif_spec())
    made, alive_at_encode = [], []
    encode = model.net.encode

    def watched(inp, **where):
        alive_at_encode.append(sum(ref() is not None for ref in made))
        latent = encode(inp, **where)
        made.append(weakref.ref(latent))
        return latent
    model.net.encode = watched
    img = image(12, 12)
    coord, cell = grid(30, 30)
    model.query(normalised(img), coord, cell, tile=4, bsize=97)
    model.upscale(img, (30, 30), tile=4, bsize=97)
    assert len(alive_at_encode) == 18 and alive_at_encode == [0] * 18


def count_table_writes(monkeypatch, backend, width=16):
    """Count the blocks written into latent tables (4-d tensors of the MLP's first width) through
    `backend.materialize`, and the finished tables the engine materialises (one a tile); returns
    the list the counts go to."""
    writes = []
    real = backend.materialize

    def materialize(t):
        if len(t.shape) == 4 and t.shape[1] == width:
            writes.append(tuple(t.shape))
        return real(t)
    monkeypatch.setattr(backend, "materialize", materialize)
    return writes


def test_the_latent_table_is_built_in_blocks_within_the_budget(monkeypatch):
    """Under a small budget a tile's latent table is built a few rows at a time (`Plan.build_block`,
    a quarter of the budget) straight into one tensor: the same output as one block."""
    model = build(liif_spec())
    img = image(40, 30)
    want = model.upscale(img, (100, 75), max_memory="1TB", progress=False)
    p = tiled.plan(model.net, 40, 30, "2MB", max_cell=0.4)
    writes = count_table_writes(monkeypatch, T)
    got = model.upscale(img, (100, 75), max_memory="2MB", progress=False)
    monkeypatch.undo()
    assert len(writes) > p.n_tiles  # some table took more than one block (a tile's finished table: one write)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


# --- Jittor ----------------------------------------------------------------------------------

@pytest.mark.jittor
@SKIP_WITHOUT_JITTOR
@pytest.mark.parametrize("spec", [slow_case(liif_spec()), {"name": "metasr", "args": {"encoder_spec": encoder("rdn")}},
                                  liif_spec(feat_unfold=False, local_ensemble=False), slow_case(lte_spec()), lte_spec("rdn")],
                         ids=["liif", "metasr", "liif-u-e", "lte", "lte-rdn"])
def test_jittor_tiled_equals_untiled(spec):
    from liif.backends import jittor as J
    model = build(spec, backend=J)
    check_tiled(model, scales={"x12.5": SCALES["x12.5"]}, tiles=(3,))
    # and the same values as the torch model tiled
    img = image(11, 9)
    coord, cell = grid(44, 36)
    np.testing.assert_allclose(model.query(normalised(img), coord, cell, tile=3),
                               build(spec).query(normalised(img), coord, cell, tile=3), atol=1e-5)


@pytest.mark.slow
@pytest.mark.jittor
@SKIP_WITHOUT_JITTOR
@pytest.mark.parametrize("spec", [lte_spec(), lte_spec("rdn")], ids=["lte", "lte-rdn"])
def test_jittor_lte_tiled_equals_untiled_at_every_scale(spec):
    """LTE on Jittor, both encoders, at x1.3, x4, x12.5 and x30 in tiles of 2 and 3 (the torch cases'
    seams): its table, looked up through Jittor's fused reindex, and its bilinear skip in windows."""
    from liif.backends import jittor as J
    check_tiled(build(spec, backend=J))


@pytest.mark.jittor
@SKIP_WITHOUT_JITTOR
def test_jittor_latent_table_in_row_blocks_equals_whole(monkeypatch):
    """The table written block by block into one Jittor Var (setitem, then sync) = the table built whole."""
    from liif.backends import jittor as J
    from liif.models.liif import LIIF
    model = build(liif_spec(), backend=J)
    inp, (coord, cell) = normalised(image(11, 9)), grid(44, 36)
    whole = model.query(inp, coord, cell)
    monkeypatch.setattr(LIIF, "TABLE_BLOCK", 8 * 9 * 9 * 2)  # unfolded channels x width x 2 rows
    writes = count_table_writes(monkeypatch, J)
    blocked = model.query(inp, coord, cell)
    monkeypatch.undo()
    assert len(writes) == 6 + 1  # 11 rows, 2 at a time, and the finished table
    np.testing.assert_allclose(blocked, whole, atol=1e-6, rtol=0)


@pytest.mark.jittor
@SKIP_WITHOUT_JITTOR
def test_jittor_windowed_lookup_equals_torch():
    from liif.backends import jittor as J
    rng = np.random.default_rng(1)
    full = rng.standard_normal((1, 4, 13, 10)).astype(np.float32)
    coord = rng.uniform(-1.1, 1.1, (1, 3000, 2)).astype(np.float32)
    coord[0, :1000, 0] = make_coord((16,))[rng.integers(0, 16, 1000), 0]
    part = np.ascontiguousarray(full[:, :, 3:9, 2:9])
    want = T.grid_sample_nearest(torch.from_numpy(part), torch.from_numpy(coord), (13, 10, 3, 2)).numpy()
    got = J.to_numpy(J.grid_sample_nearest(J.tensor(part), J.tensor(coord), (13, 10, 3, 2)))
    np.testing.assert_array_equal(got, want)


# --- task=test and task=demo -----------------------------------------------------------------

def test_whole_image_evaluation_is_tiled_exactly():
    """task=test's predict_image with the `infer` options: tiles give the untiled prediction."""
    from liif.coords import to_pixel_samples
    from liif.evaluation.evaluate import predict_image
    model = build(liif_spec())
    hr = image(36, 28).astype(np.float32).transpose(2, 0, 1) / 255
    coord, gt = to_pixel_samples(hr)
    sample = {"inp": np.ascontiguousarray(hr[:, ::4, ::4]), "coord": coord, "gt": gt,
              "cell": np.tile(np.array([2 / 36, 2 / 28], np.float32), (len(coord), 1))}
    want, _, shape = predict_image(model, sample, 30000)
    got, _, _ = predict_image(model, sample, 500, {"max_memory": "1GB", "tile": 3})
    assert shape == (36, 28) and np.abs(got - want).max() <= 1e-5


@pytest.mark.slow
def test_demo_cli_tiled_and_its_budget_errors(tmp_path, fixtures_dir):
    """task=demo's infer.* settings, the CLI's path after composition (in process)."""
    from PIL import Image
    from conftest import compose, run_task_with_overrides
    ckpt = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    src = tmp_path / "in.png"
    Image.fromarray(image(23, 19)).save(src)
    out = tmp_path / "out.png"
    demo = compose("task=demo", f"checkpoint={ckpt}", f"input={src}", "size=[57,43]", "device=cpu")
    status, err = run_task_with_overrides(demo, f"output={out}", "infer.max_memory=1GB", "infer.tile=6",
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 0, err
    model = liif.load_model(ckpt, device="cpu")
    coord, cell = grid(57, 43)
    assert_uint8_matches(np.asarray(Image.open(out)), untiled_query(model, normalised(image(23, 19)), coord, cell))
    status, err = run_task_with_overrides(demo, f"output={tmp_path / 'o.png'}", "infer.max_memory=1KB",
                                          f"output_dir={tmp_path / 'run2'}")
    assert status == 2 and err.count("\n") == 1, err
    assert "too small for this model" in err and "use max_memory=" in err
