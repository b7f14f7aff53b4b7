"""The data pipeline against the original implementation's outputs (data_pipeline.npz).

Every comparison is exact: the LR images are Pillow bicubic on 8-bit data, values are
uint8/255 in float32 (one correctly rounded division, as torch's ToTensor), and the
coordinates use torch's float32 order of operations (liif/coords.py). So any difference,
however small, is a real mismatch (a wrong crop, flip order, pixel order or scale rule).
"""

import numpy as np
import pytest

from liif.coords import make_coord, to_pixel_samples
from liif.data import SRImplicitDownsampled, SRImplicitPaired, resize_bicubic

KEYS = ("inp", "coord", "cell", "gt")


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    with np.load(fixtures_dir / "data_pipeline.npz") as d:
        return dict(d)


def chw_float(img):
    return img.transpose(2, 0, 1).astype(np.float32) / np.float32(255)


def assert_sample_equal(sample, ref, prefix):
    assert set(sample) == set(KEYS)
    for k in KEYS:
        assert sample[k].dtype == np.float32
        np.testing.assert_array_equal(sample[k], ref[f"{prefix}_{k}"], err_msg=f"{prefix}_{k}")


@pytest.mark.parametrize("hr, size, key", [
    ("hr_192", 48, "resize_192_to_48"),
    ("hr_178", 48, "resize_178_to_48"),  # non-integer factor (3.71), one number for a square
    ("hr_100x90", (16, 15), "resize_100x90_to_16x15"),  # (h, w), which PIL takes as (w, h)
])
def test_bicubic_lr_is_exact(ref, hr, size, key):
    lr = resize_bicubic(ref[hr], size)
    assert lr.dtype == np.uint8
    np.testing.assert_array_equal(chw_float(lr), ref[key])


@pytest.mark.parametrize("scale", [6, 2.5])
def test_downsampled_test_mode(ref, scale):
    # 100x90 at x6: LR 16x15 and the HR cut to 96x90; at x2.5: LR 40x36, nothing cut
    wrapper = SRImplicitDownsampled([ref["hr_100x90"]], scale_min=scale)
    assert_sample_equal(wrapper[0], ref, f"down_s{scale}")


def test_paired_test_mode(ref):
    lr = np.round(ref["resize_100x90_to_16x15"] * 255).astype(np.uint8).transpose(1, 2, 0)
    wrapper = SRImplicitPaired([(lr, ref["hr_100x90"])])  # x6 from the heights: HR cut to 96x90
    assert_sample_equal(wrapper[0], ref, "paired")


def test_training_wrapper_replays_recorded_draws(ref):
    wrapper = SRImplicitDownsampled(None, inp_size=48, scale_min=1, scale_max=4, augment=True, sample_q=2304)
    x0, y0 = (int(v) for v in ref["train_x0y0"])
    draws = {
        "scale": float(ref["train_scale"]), "x0": x0, "y0": y0,
        "flips": tuple(bool(f) for f in ref["train_hflip_vflip_dflip"]),
        "sample_idx": ref["train_sample_idx"],
    }
    assert_sample_equal(wrapper.apply(ref["hr_256"], draws), ref, "train")


def test_training_draws_have_the_recorded_form(ref):
    # our own draws for the same setting: same types and ranges as the recorded ones
    wrapper = SRImplicitDownsampled(None, inp_size=48, scale_min=1, scale_max=4, augment=True, sample_q=2304)
    draws = wrapper.draw(0, ref["hr_256"].shape)
    side = round(48 * draws["scale"])
    assert 1 <= draws["scale"] <= 4
    assert 0 <= draws["x0"] <= 256 - side and 0 <= draws["y0"] <= 256 - side
    assert len(set(draws["sample_idx"].tolist())) == 2304 and draws["sample_idx"].max() < side * side
    assert wrapper.apply(ref["hr_256"], draws)["inp"].shape == ref["train_inp"].shape


def test_make_coord(ref):
    np.testing.assert_array_equal(make_coord((3, 5)), ref["make_coord_3x5"])
    grid = make_coord((4, 4), ranges=[(-1, 1), (0, 1)], flatten=False)
    np.testing.assert_array_equal(grid, ref["make_coord_4x4_ranges_noflat"])


def test_to_pixel_samples(ref):
    coord, rgb = to_pixel_samples(ref["pixsamp_img"])
    np.testing.assert_array_equal(coord, ref["pixsamp_coord"])
    np.testing.assert_array_equal(rgb, ref["pixsamp_rgb"])
