"""`python run.py task=demo ...` through the real CLI: any input mode, exact output size,
one-line errors with a non-zero exit for bad input."""
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ckpt(fixtures_dir):
    return str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")


def _image(path, mode, size=(20, 14)):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    return str(path)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_demo_writes_the_requested_size(tmp_path, ckpt, mode):
    src = _image(tmp_path / f"in_{mode}.png", mode)
    out = tmp_path / "out.png"
    r = run_cli("task=demo", f"checkpoint={ckpt}", f"input={src}", "size=[31,57]", f"output={out}",
                "device=cpu", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (57, 31) and im.mode == "RGB"  # PIL size is (width, height)


@pytest.mark.parametrize("size, message", [("[0,10]", "positive integers"), ("[-3,10]", "positive integers"),
                                           ("[2.5,10]", "positive integers"), ("abc", "height, width"),
                                           ("[1,2,3]", "height, width")])
def test_malformed_size_is_one_clear_line(tmp_path, ckpt, size, message):
    src = _image(tmp_path / "in.png", "RGB")
    r = run_cli("task=demo", f"checkpoint={ckpt}", f"input={src}", f"size={size}", f"output={tmp_path / 'o.png'}",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_input_is_one_clear_line(tmp_path, ckpt):
    r = run_cli("task=demo", f"checkpoint={ckpt}", f"input={tmp_path / 'nope.png'}", "size=[8,8]",
                f"output={tmp_path / 'o.png'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "input image not found" in r.stderr and "Traceback" not in r.stderr


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    src = _image(tmp_path / "in.png", "RGB")
    r = run_cli("task=demo", f"checkpoint={tmp_path / 'none.pth'}", f"input={src}", "size=[8,8]",
                f"output={tmp_path / 'o.png'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr and "Traceback" not in r.stderr


def test_debug_flag_shows_the_traceback(tmp_path, ckpt):
    r = run_cli("task=demo", f"checkpoint={ckpt}", f"input={tmp_path / 'nope.png'}", "size=[8,8]",
                f"output={tmp_path / 'o.png'}", "debug=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0 and "Traceback" in r.stderr
