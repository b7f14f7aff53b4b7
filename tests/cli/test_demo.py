"""`python run.py task=demo ...`, the CLI's path after Hydra's composition (in process, on a config
composed once): any input mode, exact output size, one-line errors with exit status 2 for bad input."""
import numpy as np
import pytest
from PIL import Image

from conftest import compose, run_task_with_overrides


@pytest.fixture(scope="module")
def demo_cfg(fixtures_dir):
    return compose("task=demo", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "device=cpu")


def _image(path, mode, size=(20, 14)):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    return str(path)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_demo_writes_the_requested_size(demo_cfg, tmp_path, mode):
    src = _image(tmp_path / f"in_{mode}.png", mode)
    out = tmp_path / "out.png"
    status, err = run_task_with_overrides(demo_cfg, f"input={src}", "size=[31,57]", f"output={out}",
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 0, err
    with Image.open(out) as im:
        assert im.size == (57, 31) and im.mode == "RGB"  # PIL size is (width, height)


@pytest.mark.parametrize("size, message", [("[0,10]", "positive integers"), ("[-3,10]", "positive integers"),
                                           ("[2.5,10]", "positive integers"), ("abc", "height, width"),
                                           ("[1,2,3]", "height, width")])
def test_malformed_size_is_one_clear_line(demo_cfg, tmp_path, size, message):
    src = _image(tmp_path / "in.png", "RGB")
    status, err = run_task_with_overrides(demo_cfg, f"input={src}", f"size={size}", f"output={tmp_path / 'o.png'}",
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_missing_checkpoint_is_one_clear_line(demo_cfg, tmp_path):
    src = _image(tmp_path / "in.png", "RGB")
    status, err = run_task_with_overrides(demo_cfg, f"checkpoint={tmp_path / 'none.pth'}", f"input={src}", "size=[8,8]",
                                          f"output={tmp_path / 'o.png'}", f"output_dir={tmp_path / 'run'}")
    assert status == 2 and "checkpoint not found" in err and "Traceback" not in err
