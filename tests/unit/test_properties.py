"""Property-based tests (hypothesis): coordinates, size parsing, the image loader on
generated files, and model queries on random shapes and coordinates."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from liif import backends
from liif.models import registry
from liif.config import parse_size
from liif.inference.api import Model
from liif.coords import make_cell, make_coord, to_pixel_samples
from liif.data.image_folder import read_image
from liif.errors import ImageError

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
    backend = backends.get("torch")
    backend.seed(0)
    encoder = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}}
    specs = [{"name": "liif", "args": {"encoder_spec": encoder, "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}},
                                       "local_ensemble": le, "feat_unfold": fu, "cell_decode": cd}}
             for le in (True, False) for fu in (True, False) for cd in (True, False)]
    specs.append({"name": "metasr", "args": {"encoder_spec": encoder}})
    return [Model(registry.make(spec, backend), backend, spec, "cpu") for spec in specs]


@pytest.mark.slow
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


# ---- the CLI contract (issue 11): exit 0 with correct outputs, or exit 2 with one line --------------------
# Over command-line values and file contents: `size`, `eval_bsize`, what `output=` names, what the input
# and the checkpoint files hold. Every example also checks that nothing changed outside the named output
# (a refused run changes nothing at all), and that an example made only of valid parts succeeds.
import os  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402

from conftest import FIXTURES, compose, run_cli_inprocess, run_task_with_overrides  # noqa: E402
from conftest import tree_state  # noqa: E402

CKPT = FIXTURES / "ckpt_edsr-baseline-liif.pth"
CONTRACT = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID_SIZES = st.tuples(st.integers(1, 24), st.integers(1, 24)).map(lambda hw: (f"[{hw[0]},{hw[1]}]", hw))
BAD_SIZES = st.sampled_from(["abc", "[0,5]", "[-1,5]", "[2.5,3]", "[1,2,3]", "[]", "5", "[true,4]", "null",
                             "[10000000,10000000]", "'[4,4]'", "[4,abc]"]).map(lambda s: (s, None))
VALID_BSIZES = st.integers(1, 70000).map(lambda b: (str(b), True))
BAD_BSIZES = st.one_of(st.integers(-3, 0).map(str), st.sampled_from(["abc", "2.5", "true", "null", "1e3", "[]"])).map(
    lambda b: (b, False))


def _image_file(w, kind, seed):
    path = w / "in.png"
    rng = np.random.default_rng(seed)
    if kind == "image":
        h, wd = 1 + seed % 17, 1 + (seed // 17) % 13
        mode = ["RGB", "L", "RGBA", "P", "I;16", "1"][seed % 6]
        base = Image.fromarray(rng.integers(0, 256, (h, wd, 3), dtype=np.uint8))
        (base.convert("I;16") if mode == "I;16" else base.convert(mode)).save(path)
    elif kind == "exif jpeg":
        path = w / "in.jpg"
        im = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8))
        exif = im.getexif()
        exif[0x0112] = 1 + seed % 8
        im.save(path, exif=exif)
    elif kind == "random bytes":
        path.write_bytes(rng.integers(0, 256, 1 + seed % 300, dtype=np.uint8).tobytes())
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "truncated png":
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    return str(path)  # "missing": never made


def _checkpoint_file(w, kind, seed):
    path = w / "model.pth"
    if kind == "fixture":
        return str(CKPT)
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 1 + seed % 500, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(CKPT.read_bytes()[: 1000 + seed % 100000])
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    return str(path)  # "missing": never made


def _output(w, kind, ext):
    if kind == "new file":
        return str(w / f"out{ext}"), True
    if kind == "new nested folders":
        return str(w / "a" / "b" / f"out{ext}"), True
    if kind == "existing file":
        (w / f"old{ext}").write_bytes(b"old")
        return str(w / f"old{ext}"), True
    if kind == "unknown extension":
        return str(w / "out.xyz"), False
    if kind == "the input":
        return "INPUT", False
    if kind == "a folder":
        return str(w), False
    if kind == "trailing slash":
        return f"{w}/x/", False
    if kind == "empty":
        return "", False
    if kind == "under a file":
        (w / "f").write_bytes(b"x")
        return str(w / "f" / f"o{ext}"), False
    if kind == "socket":  # a special file of our own (never /dev/null: a broken writer would replace it)
        import socket
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(w / f"s{ext}"))
        sock.close()
        return str(w / f"s{ext}"), False
    if kind == "fifo":
        os.mkfifo(w / f"q{ext}")
        return str(w / f"q{ext}"), False
    if kind == "symlink":
        os.symlink(w / "elsewhere.png", w / f"l{ext}")
        return str(w / f"l{ext}"), False
    if kind == "read-only file":
        (w / f"ro{ext}").write_bytes(b"x")
        os.chmod(w / f"ro{ext}", 0o444)
        return str(w / f"ro{ext}"), False
    raise AssertionError(kind)


def check_contract(status, err, expect_ok):
    """The contract itself; returns whether the run succeeded."""
    assert status in (0, 1, 2), (status, err)
    assert "Traceback" not in err, err
    if status == 1:  # a value of the wrong type, refused by the typed config while Hydra composes
        assert err.startswith("Error merging override"), err
    if status == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert (status == 0) == expect_ok, (status, err)
    return status == 0


@pytest.fixture(scope="module")
def demo_base():
    return compose("task=demo", "device=cpu", "framework.threads=1")


@pytest.mark.slow
@CONTRACT
@given(size=st.one_of(VALID_SIZES, BAD_SIZES), bsize=st.one_of(VALID_BSIZES, BAD_BSIZES),
       output=st.sampled_from(["new file", "new nested folders", "existing file", "unknown extension", "the input",
                               "a folder", "trailing slash", "empty", "under a file", "socket", "fifo", "symlink",
                               "read-only file"]),
       ext=st.sampled_from([".png", ".jpg", ".JPEG", ".bmp", ".webp", ".tif"]),
       image=st.sampled_from(["image", "image", "image", "exif jpeg", "random bytes", "empty file", "truncated png",
                              "folder", "fifo", "missing"]),
       ckpt=st.sampled_from(["fixture", "fixture", "fixture", "random bytes", "truncated", "empty file", "folder",
                             "missing"]),
       seed=st.integers(0, 10_000))
def test_demo_cli_contract(demo_base, tmp_path_factory, size, bsize, output, ext, image, ckpt, seed):
    w = tmp_path_factory.mktemp("fuzz")
    input_path = _image_file(w, image, seed)
    ckpt_path = _checkpoint_file(w, ckpt, seed)
    out, out_ok = _output(w, output, ext)
    out = input_path if out == "INPUT" else out
    (size_text, hw), (bsize_text, bsize_ok) = size, bsize
    before = tree_state(w)
    status, err = run_task_with_overrides(demo_base, f"size={size_text}", f"eval_bsize={bsize_text}",
                                          f"output='{out}'", f"input='{input_path}'", f"checkpoint='{ckpt_path}'")
    valid = (hw is not None and bsize_ok and out_ok and ckpt == "fixture"
             and image in ("image", "exif jpeg"))
    after = tree_state(w)
    if check_contract(status, err, valid):
        with Image.open(out) as im:
            assert im.size == (hw[1], hw[0]) and im.mode == "RGB"
            assert im.format == {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF"}.get(ext.lower(), ext[1:].upper())
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~umask
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        assert changed <= {os.path.relpath(out, w), "a", os.path.join("a", "b")}, changed  # the output, its new folders
    else:
        assert after == before
    shutil.rmtree(w, ignore_errors=True)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(task=st.sampled_from(["test", "test", "report"]),
       scales=st.one_of(st.lists(st.integers(1, 8), min_size=1, max_size=2).map(lambda s: (str(s).replace(" ", ""), True)),
                        st.sampled_from(["[0]", "[-2]", "[2.5]", "abc", "[40]"]).map(lambda s: (s, False))),
       data=st.sampled_from(["images", "images", "empty folder", "a file", "missing", "garbage file", "tiny images"]),
       seed=st.integers(0, 1000))
def test_full_cli_contract_for_test_and_report(tmp_path_factory, task, scales, data, seed):
    """Through Hydra's command-line parsing too (few examples: each composes the config)."""
    w = tmp_path_factory.mktemp("cli")
    folder = w / "data"
    if data in ("images", "tiny images", "garbage file", "empty folder"):
        folder.mkdir()
        side = 3 if data == "tiny images" else 16
        for i in range(2):
            Image.fromarray(np.random.default_rng(seed + i).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
                folder / f"{i}.png")
        if data == "garbage file":
            (folder / "notes.txt").write_text("x")
        if data == "empty folder":
            for p in folder.iterdir():
                p.unlink()
    elif data == "a file":
        folder.write_text("x")
    run_dir = w / "run"
    before = tree_state(w)
    scales_text, scales_ok = scales
    if task == "test":
        status, _, err = run_cli_inprocess("task=test", f"checkpoint={CKPT}", "dataset=folder", f"dataset.path={folder}",
                                           f"scales={scales_text}", "device=cpu", "framework.threads=1",
                                           f"hydra.run.dir={run_dir}")
        side = 3 if data == "tiny images" else 16
        fits = scales_ok and all(s <= side for s in eval(scales_text))  # noqa: S307 - our own literal
        expect_ok = data in ("images", "tiny images") and fits
    else:
        status, _, err = run_cli_inprocess("task=report", f"dir={folder}", f"hydra.run.dir={run_dir}")
        expect_ok = False  # a data folder holds no runs: refused, nothing written there
    after = tree_state(w)
    if check_contract(status, err, expect_ok):
        import json
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "ok" and len(metrics["records"]) == len(eval(scales_text))  # noqa: S307
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert all(p.split(os.sep)[0] == run_dir.name for p in changed), changed  # tree_state's paths are relative to w
    shutil.rmtree(w, ignore_errors=True)
