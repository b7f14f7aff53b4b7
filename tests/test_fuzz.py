"""Property-based tests (hypothesis): coordinates, size parsing, the image loader on
generated files, and model queries on random shapes and coordinates."""
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from liif import backends, registry
from liif.api import Model, parse_size
from liif.coords import make_cell, make_coord, to_pixel_samples
from liif.data.image_folder import ImageError, read_image

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3))
def test_make_coord_is_the_pixel_centres(shape):
    coord = make_coord(shape, flatten=False)
    assert coord.shape == (*shape, len(shape)) and coord.dtype == np.float32
    for axis, n in enumerate(shape):
        centres = np.moveaxis(coord[..., axis], axis, 0).reshape(n, -1)
        np.testing.assert_allclose(centres[:, 0], -1 + (2 * np.arange(n) + 1) / n, atol=1e-6)
        assert (centres == centres[:, :1]).all()  # constant along the other axes
    assert (np.abs(coord) < 1).all()
    np.testing.assert_allclose(coord, -coord[tuple(slice(None, None, -1) for _ in shape)], atol=1e-6)  # symmetric


@FAST
@given(st.integers(1, 30), st.integers(1, 30))
def test_pixel_samples_are_row_major(h, w):
    img = np.random.default_rng(h * 31 + w).random((3, h, w), dtype=np.float32)
    coord, rgb = to_pixel_samples(img)
    assert coord.shape == (h * w, 2) and rgb.shape == (h * w, 3)
    k = (h // 2) * w + (w // 3)
    np.testing.assert_array_equal(rgb[k], img[:, h // 2, w // 3])
    np.testing.assert_array_equal(make_cell((h, w), 4)[0], np.float32([2 / h, 2 / w]))


@FAST
@given(st.one_of(st.tuples(st.integers(-5, 5000), st.integers(-5, 5000)), st.tuples(st.floats(-10, 10), st.floats(-10, 10)),
                 st.text(max_size=6), st.lists(st.integers(1, 9), max_size=4), st.none()))
def test_parse_size_accepts_exactly_two_positive_integers(size):
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(not isinstance(v, bool) and float(v).is_integer() and v > 0 for v in size))
    if ok:
        assert parse_size(size) == (int(size[0]), int(size[1]))
    else:
        with pytest.raises(ValueError):
            parse_size(size)


@FAST
@given(st.integers(1, 24), st.integers(1, 24), st.sampled_from(["RGB", "RGBA", "L", "P", "LA", "I;16", "1"]),
       st.sampled_from(["PNG", "BMP", "TIFF"]))
def test_loader_reads_any_generated_image_as_rgb(tmp_path_factory, h, w, mode, fmt):
    if fmt == "BMP" and mode in ("RGBA", "LA", "I;16"):
        return  # BMP cannot hold these modes
    rng = np.random.default_rng(h * 100 + w)
    base = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    image = base.convert("I;16") if mode == "I;16" else base.convert(mode)
    path = tmp_path_factory.mktemp("img") / f"x.{fmt.lower()}"
    image.save(path, format=fmt)
    out = read_image(str(path))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    if mode in ("RGB", "RGBA"):
        np.testing.assert_array_equal(out, np.asarray(base))


@FAST
@given(st.binary(min_size=0, max_size=200))
def test_loader_rejects_garbage_with_a_clear_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("bad") / "bad.png"
    path.write_bytes(blob)
    with pytest.raises(ImageError, match="bad.png"):
        read_image(str(path))


@pytest.fixture(scope="module")
def tiny_models():
    B = backends.get("torch")
    B.seed(0)
    encoder = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}}
    specs = [{"name": "liif", "args": {"encoder_spec": encoder, "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}},
                                       "local_ensemble": le, "feat_unfold": fu, "cell_decode": cd}}
             for le in (True, False) for fu in (True, False) for cd in (True, False)]
    specs.append({"name": "metasr", "args": {"encoder_spec": encoder}})
    return [Model(registry.make(spec, B), B, spec, "cpu") for spec in specs]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 50), st.integers(0, 10_000),
       st.floats(0.1, 3.0))
def test_query_is_finite_anywhere(tiny_models, b, h, w, q, seed, spread):
    """Any coordinate, inside or outside [-1, 1], any cell, any input size: finite output."""
    rng = np.random.default_rng(seed)
    inp = rng.uniform(-1, 1, (b, 3, h, w)).astype(np.float32)
    coord = rng.uniform(-spread, spread, (b, q, 2)).astype(np.float32)
    cell = rng.uniform(1e-4, 2, (b, q, 2)).astype(np.float32)
    for model in tiny_models:
        out = model.query(inp, coord, cell, bsize=7)
        assert out.shape == (b, q, 3) and np.isfinite(out).all(), model.spec
