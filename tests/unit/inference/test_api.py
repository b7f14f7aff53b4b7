"""The public API contract: query shapes/dtypes, upscale rounding and bounded chunking."""
import numpy as np
import pytest

import liif
from liif.config import parse_size
from liif.inference.api import to_rgb
from liif.coords import make_coord


@pytest.fixture(scope="module")
def model(fixtures_dir):
    return liif.load_model(str(fixtures_dir / "ckpt_edsr-baseline-liif.pth"), framework="torch", device="cpu")


def test_upscale_equals_query_rounded(model):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    H, W = 20, 31
    sr = model.upscale(image, (H, W), bsize=97)  # odd chunk: coordinates are made per chunk
    inp = ((image / 255).astype(np.float32) - 0.5) / 0.5
    coord = make_coord((H, W))[None]
    cell = np.tile(np.array([2 / H, 2 / W], np.float32), (1, H * W, 1))
    pred = model.query(inp.transpose(2, 0, 1)[None].astype(np.float32), coord, cell)[0]
    expected = np.round(np.clip(pred * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8).reshape(H, W, 3)
    assert sr.dtype == np.uint8 and sr.shape == (H, W, 3)
    np.testing.assert_array_equal(sr, expected)
    # rounding, not the original demo's flooring
    assert (np.floor(np.clip(pred * 0.5 + 0.5, 0, 1) * 255).reshape(H, W, 3) != sr).any()


def test_query_returns_float32_b_q_3(model):
    out = model.query(np.zeros((2, 3, 6, 7), np.float32), np.zeros((2, 5, 2), np.float32), np.full((2, 5, 2), 0.1, np.float32))
    assert out.shape == (2, 5, 3) and out.dtype == np.float32


def test_grey_and_rgba_inputs_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb(grey).shape == (3, 4, 3) and (to_rgb(grey)[..., 2] == grey).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert to_rgb(rgba).shape == (3, 4, 3)
    with pytest.raises(ValueError):
        to_rgb(np.zeros((3, 4, 2), np.uint8))


@pytest.mark.parametrize("bad", [(0, 5), (5, -1), (2.5, 3), "12", (1, 2, 3), None, (True, 4)])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_parse_size_accepts_integral_floats():
    assert parse_size([4.0, 7]) == (4, 7)
