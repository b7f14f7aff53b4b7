"""A decoder written in this file, and registered from it, works in the tiled engine and in the viewer
with no change anywhere else: they use a model only through the decoder contract
(liif/models/decoder.py: encode -> Latent, decode, reach, footprint).

The toy decoder is small but has what makes tiling hard: a 3x3 convolution of its own on the latent
(spoiled at a tile's cut edge), lookups away from the query's own latent pixel, and lookups whose
distance grows with the query's cell, so that its `reach` depends on `max_cell`. A toy that
understates its reach gives another output in tiles: the tiled test can tell a lie.
"""
import math
import warnings

import numpy as np
import pytest
import torch

from conftest import SKIP_WITHOUT_JITTOR

import liif
from liif.backends import torch as T
from liif.inference import tiled
from liif.inference.api import Model
from liif.models import checkpoint, registry
from liif.models.decoder import Footprint, Latent, crop_map
from serve_helpers import assemble, expected_view, messages, photo, tiny_checkpoint
from unit.inference.test_tiled import grid, image, normalised  # the tiled tests' inputs

NAME = "test-toy-corners"  # registered by this file only
ENCODER = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}}
TOY = {"name": NAME, "args": {"encoder_spec": ENCODER, "channels": 4, "hidden": 16}}


class ToyCorners:
    """A 3x3 convolution of the encoder's features to `channels` codes; a query reads the code under
    each of its cell's four corners (nearest latent pixel) and an MLP maps the four codes and the cell
    (in latent pixels) to RGB."""

    def __init__(self, encoder_spec: dict, channels: int = 4, hidden: int = 16):
        super().__init__()
        self.encoder = registry.make(encoder_spec, self.backend)
        self.code = self.backend.nn.Conv2d(self.encoder.out_dim, channels, 3, padding=1)
        self.imnet = registry.make({"name": "mlp", "args": {"in_dim": 4 * channels + 2, "out_dim": 3,
                                                            "hidden_list": [hidden]}}, self.backend)
        self.channels, self.hidden = channels, hidden

    def encode(self, inp, crop=None, window=None, block=None):
        return Latent({"code": self.code(crop_map(self.encoder(inp), crop))}, window)

    def decode(self, latent, coord, cell):
        backend, code = self.backend, latent["code"]
        h, w = latent.whole_size
        bs, q = coord.shape[:2]
        codes = []
        for corner in ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)):
            at = coord + cell * backend.tensor(np.array(corner, np.float32), like=code)
            codes.append(backend.grid_sample_nearest(code, at.clamp(-1 + 1e-6, 1 - 1e-6), latent.window))
        size = cell * backend.tensor(np.array([h / 2, w / 2], np.float32), like=code)  # in latent pixels
        return self.imnet(backend.cat(codes + [size], -1).view(bs * q, -1)).view(bs, q, 3)

    def reach(self, max_cell):
        """A corner lies max_cell / 2 latent pixels from the query's centre: its pixel at most
        ceil(max_cell / 2) from the centre's; and the code's 3x3 convolution is spoiled one pixel
        in from a crop's cut edge."""
        return math.ceil(max_cell / 2) + 1

    def footprint(self):
        c, k = self.encoder.out_dim, self.channels
        # per latent pixel: the kept features while the codes are made, and the codes; per query: its
        # coordinates and cell, a corner, the four codes and their concatenation, the MLP's hidden
        # layer (and its ReLU), the output
        return Footprint(latent_floats=c + k, query_floats=4 + 2 + 2 * (4 * k + 2) + 2 * self.hidden + 3)

    def forward(self, inp, coord, cell):
        return self.decode(self.encode(inp), coord, cell)


@pytest.fixture(autouse=True)
def toy_registered():
    """The toy in the project's registry for one test, and gone after it (the registry is the
    process's: a name left behind would be in every later test's `registry.names()`)."""
    assert NAME not in registry.names()
    registry.register(NAME)(ToyCorners)
    yield
    registry.models.entries.pop(NAME)  # the registry has no unregister: its table is a plain dict


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tiles: one OpenMP thread (as tests/unit/inference/test_tiled.py, which says why)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(backend=T, seed=0):
    """The toy with random weights (torch's default init), on `backend` the same weights."""
    torch.manual_seed(seed)
    net = registry.make(TOY, T)
    if backend is not T:
        other = registry.make(TOY, backend)
        backend.load_state_dict_numpy(other, T.state_dict_numpy(net))
        net = other
    return Model(net, backend, TOY, "cpu")


def untiled_query(model, inp, coord, cell):
    """The whole-input computation: the encoder on the whole input, one decoder call for every query."""
    backend, net = model.backend, model.net
    net.eval()
    with backend.no_grad():
        latent = net.encode(backend.tensor(inp))
        return backend.to_numpy(net.decode(latent, backend.tensor(coord), backend.tensor(cell)))


def wide_cells(h, w, n=4000, seed=0):
    """Queries anywhere (outside the image too), in any order, with cells of 0.1 to 7 latent pixels."""
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-1.1, 1.1, (1, n, 2)).astype(np.float32)
    cell = (rng.uniform(0.1, 7, (1, n, 2)) * np.array([2 / h, 2 / w])).astype(np.float32)
    return coord, cell


def assert_uint8_matches(sr, pred):
    """uint8 `sr` is the rounded float `pred` (normalised, (1, H*W, 3)) wherever the float is not within
    1e-3 of a rounding boundary."""
    value = (np.clip(pred[0] * 0.5 + 0.5, 0, 1) * 255).reshape(sr.shape)
    near_boundary = np.abs(value - np.floor(value) - 0.5) < 1e-3
    assert (sr == np.round(value))[~near_boundary].all()


# a 50 x 61 input at x0.6 (cells of 1.7 latent pixels), x1.3, x2.5 and x4 (non-square output)
H, W = 50, 61
SCALES = {"x0.6": (30, 37), "x1.3": (65, 79), "x2.5": (125, 153), "x4": (200, 250)}
# the smallest budget the planner meets for it (tiles of at least 16 pixels a side, chunks of at least
# 1024 queries): 2 x 4 tiles at these scales, 4 x 4 for cells up to 7 latent pixels (a wider margin)
BUDGET = "480KB"
# small inputs (each spans several tiles of 2 and 3 pixels, the smallest being smaller than one
# tile of 5) at x1.3, x4, x12.5 and x30
TINY = {"x1.3": (9, 13, 12, 17), "x4": (11, 9, 44, 36), "x12.5": (8, 6, 100, 75), "x30": (5, 7, 150, 210)}


@pytest.mark.parametrize("scale", SCALES)
def test_tiled_equals_untiled_within_a_small_budget(scale):
    """The tiles the engine plans for a memory budget: `query`, and `render` (rounded to uint8)."""
    model = build()
    img = image(H, W)
    out_h, out_w = SCALES[scale]
    coord, cell = grid(out_h, out_w)
    want = untiled_query(model, normalised(img), coord, cell)
    encoding = model.encode(img, max_memory=BUDGET, progress=False)
    p = encoding.plan(max(H / out_h, W / out_w))
    assert p.n_tiles > 1 and p.estimate <= p.budget
    assert np.abs(encoding.query(coord[0], cell[0])[None] - want).max() <= 1e-5
    assert_uint8_matches(encoding.render((out_h, out_w)), want)


@pytest.mark.parametrize("scale", TINY)
def test_tiled_equals_untiled_in_tiny_tiles(scale):
    """Tiles of 2, 3 and 5 input pixels: nearly every query is near a seam."""
    model = build()
    h, w, out_h, out_w = TINY[scale]
    img = image(h, w)
    coord, cell = grid(out_h, out_w)
    want = untiled_query(model, normalised(img), coord, cell)
    for tile in (2, 3, 5):
        err = np.abs(model.query(normalised(img), coord, cell, tile=tile) - want).max()
        assert err <= 1e-5, f"tile {tile}: max abs error {err}"
    assert_uint8_matches(model.upscale(img, (out_h, out_w), tile=2, progress=False), want)


@pytest.mark.jittor
@SKIP_WITHOUT_JITTOR
def test_the_same_class_on_jittor_tiled_equals_untiled():
    """The toy is framework-neutral, as the project's models: on Jittor, in 3-pixel tiles, it gives its
    untiled output, and the torch model's."""
    from liif.backends import jittor as J
    model = build(J)
    h, w, out_h, out_w = TINY["x12.5"]
    inp, (coord, cell) = normalised(image(h, w)), grid(out_h, out_w)
    got = model.query(inp, coord, cell, tile=3)
    assert np.abs(got - untiled_query(model, inp, coord, cell)).max() <= 1e-5
    np.testing.assert_allclose(got, build().query(inp, coord, cell, tile=3), atol=1e-5, rtol=0)


def test_tiled_equals_untiled_for_any_queries_and_wide_cells():
    """Queries in any order, outside the image, with cells up to 7 latent pixels (their corners up to
    4 pixels from the query's own: the margin grows with the cell), in the budget's tiles and in
    3-pixel tiles."""
    model = build()
    for (h, w), options in (((H, W), {"max_memory": BUDGET}), ((17, 23), {"tile": 3})):
        img = normalised(image(h, w))
        coord, cell = wide_cells(h, w)
        want = untiled_query(model, img, coord, cell)
        got = model.query(img, coord, cell, **options)
        assert np.abs(got - want).max() <= 1e-5, options
    assert tiled.plan(model.net, H, W, BUDGET, max_cell=7).n_tiles > 1


@pytest.mark.parametrize("lie", [lambda max_cell: 0, lambda max_cell: 1], ids=["nothing", "not the cell"])
def test_a_toy_that_understates_its_reach_is_caught(lie, monkeypatch):
    """The same toy claiming a smaller reach: no lookup beyond its own pixel ("nothing"), or the
    convolution's pixel and a neighbour whatever the cell ("not the cell"). Its tiles keep too little
    latent, and the tiled output is no longer the untiled one. (A reach one pixel short goes unseen:
    the engine keeps one pixel more than the reach, for rounding, `tiled.margin_for`.)"""
    model = build()
    img = normalised(image(17, 23))
    coord, cell = wide_cells(17, 23)
    want = untiled_query(model, img, coord, cell)
    monkeypatch.setattr(model.net, "reach", lie)
    got = model.query(img, coord, cell, tile=3)
    assert np.abs(got - want).max() > 1e-2


def test_a_checkpoint_loads_and_the_viewer_shows_model_query(tmp_path):
    """A checkpoint of the toy, written as a run writes one, loads through `liif.load_model` with its
    weights; the viewer (its image encoded in 12-pixel tiles) shows what that model's `query` computes,
    the coarse previews (cells of up to 4 latent pixels) included."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():  # as tests/unit/serve/test_app.py
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from liif.serve import sources
    from liif.serve.app import Viewer, create_app
    from liif.serve.origin import TOKEN_HEADER

    path = tiny_checkpoint(tmp_path / "run_toy" / "checkpoints" / "epoch-last.pth", spec=TOY)
    model = liif.load_model(path, device="cpu")
    assert model.spec == TOY and isinstance(model.net, ToyCorners)
    saved = checkpoint.read(path)["model"]["sd"]
    assert set(saved) == set(T.state_dict_numpy(model.net)) and all(np.array_equal(value, saved[key]) for key, value in T.state_dict_numpy(model.net).items())

    viewer = Viewer(sources.load_checkpoints([path], framework="torch", device="cpu"),
                    [sources.make_picture("i0", "a.png", photo(24, 36, 0))], tile_rows=16, tile=12)
    app = create_app(viewer)
    c = TestClient(app, base_url="http://127.0.0.1", headers={TOKEN_HEADER: app.state.token})  # as the page sends it
    assert c.get("/api/info").json()["panes"][1]["label"]["model"] == f"{NAME} (edsr-baseline)"
    for view, (scale, top, left) in enumerate(((1.0, -3, -4), (3.37, 40, 7), (7.9, 60, 190)), 1):
        r = c.get("/api/render", params={"session": "s", "view": view, "pane": "m0", "image": "i0", "scale": scale,
                                         "top": top, "left": left, "height": 30, "width": 41})
        assert r.status_code == 200, r.text
        msgs = messages(r.text)
        assert msgs[-1]["type"] == "done"
        got, covered = assemble(msgs, 30, 41, top, left)
        want, inside = expected_view(model, viewer.pictures["i0"].lr, scale, top, left, 30, 41)
        assert (covered == inside).all() and inside.any()
        diff = np.abs(got.astype(int) - want)[inside]
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99, scale
        coarse = next(m for m in msgs if m["type"] == "tile" and m["coarse"])  # a quarter of the scale
        preview, _ = assemble([{**coarse, "coarse": False}], coarse["height"], coarse["width"], coarse["top"],
                              coarse["left"])
        want, _ = expected_view(model, viewer.pictures["i0"].lr, scale / 4, coarse["top"], coarse["left"],
                                coarse["height"], coarse["width"])
        assert np.abs(preview.astype(int) - want).max() <= 1, scale
    assert viewer.cache.get(("m0", "i0"), None, None)[0].plan().n_tiles == 6
