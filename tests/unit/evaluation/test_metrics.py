"""PSNR exactly as the original protocols (psnr.npz), SSIM sanity, and the LR schedule."""
import numpy as np
import pytest

from liif.evaluation.metrics import parse_eval_type, psnr, ssim, ssim_defined
from liif.training.schedule import learning_rate


def test_psnr_reproduces_the_original_values(fixtures_dir):
    ref = np.load(fixtures_dir / "psnr.npz")
    checked = 0
    for i in range(3):
        for eval_type in ref["eval_types"]:
            eval_type = str(eval_type)
            want = float(ref[f"psnr_{i}_{eval_type}"])
            assert abs(psnr(ref[f"sr_{i}"], ref[f"hr_{i}"], eval_type) - want) <= 1e-4, (i, eval_type)
            checked += 1
    assert checked == 18


def test_psnr_edge_cases():
    x = np.random.default_rng(0).random((1, 3, 20, 20)).astype(np.float32)
    assert psnr(x, x) == float("inf")
    assert psnr(np.zeros_like(x), np.full_like(x, 0.1)) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        parse_eval_type("set5-4")


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    x = np.stack([ramp[:, None] * ramp[None, :]] * 3)[None]  # a smooth image: noise is what SSIM sees
    for eval_type in ("none", "div2k-2", "benchmark-2"):
        assert ssim(x, x, eval_type) == pytest.approx(1.0)
        assert ssim(np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1), x, eval_type) < 0.95


@pytest.mark.parametrize("side, eval_type, defined", [(10, "none", False), (11, "none", True), (26, "div2k-2", False),
                                                       (27, "div2k-2", True), (18, "benchmark-4", False), (19, "benchmark-4", True)])
def test_ssim_is_not_defined_on_what_the_shave_leaves_smaller_than_its_window(side, eval_type, defined):
    """11x11 (sigma 1.5): scikit-image raised a ValueError on less; None says it is not defined."""
    x = np.full((1, 3, side, side + 5), 0.5, np.float32)
    assert (ssim(x, x, eval_type) is not None) == defined == ssim_defined((side, side + 5), eval_type)


def test_learning_rate_follows_the_original_schedule():
    lr = lambda e: learning_rate(e, 1e-4, [200, 400, 600, 800], 0.5)  # noqa: E731
    assert [lr(1), lr(200), lr(201), lr(400), lr(401), lr(1000)] == [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 6.25e-6]
