"""PSNR exactly as the original `utils.calc_psnr`, and SSIM on the same pixels.

Protocols (`eval_type`): `none` (RGB over the whole image), `div2k-s` (RGB, shave s+6
pixels from each border), `benchmark-s` (luma difference with the EDSR weights /256,
shave s). Inputs are float arrays in [0, 1] shaped (B, 3, H, W); like the original, one
MSE is taken over the whole batch.
"""
import numpy as np

from liif.errors import ConfigError

LUMA = np.array([65.738, 129.057, 25.064], dtype=np.float32) / 256


def parse_eval_type(eval_type):
    """'div2k-4' -> ('div2k', 4); 'none'/None -> ('none', 1)."""
    if eval_type in (None, "none"):
        return "none", 1
    protocol, _, scale = str(eval_type).partition("-")
    if protocol not in ("div2k", "benchmark") or not scale.isdigit():
        raise ConfigError(f"unknown eval_type '{eval_type}'; use none, div2k-<s> or benchmark-<s>")
    return protocol, int(scale)


def shave_of(protocol, scale):
    return {"none": 0, "div2k": scale + 6, "benchmark": scale}[protocol]


def _crop(x, shave):
    return x[..., shave:-shave, shave:-shave] if shave else x


def psnr(sr, hr, eval_type=None, rgb_range=1):
    protocol, scale = parse_eval_type(eval_type)
    diff = (np.asarray(sr, np.float32) - np.asarray(hr, np.float32)) / rgb_range
    if protocol == "benchmark" and diff.shape[1] > 1:
        diff = (diff * LUMA.reshape(1, 3, 1, 1)).sum(axis=1)
    mse = np.mean(np.square(_crop(diff, shave_of(protocol, scale)), dtype=np.float64))
    return float("inf") if mse == 0 else float(-10 * np.log10(mse))


# SSIM's Gaussian window (sigma 1.5, cut at 3.5 sigma, as scikit-image and Wang et al. take it) is 11x11.
# On a smaller image SSIM is not defined: `ssim` says so with None rather than shrinking the window,
# which would make a number that is not comparable with anyone's SSIM.
SSIM_WINDOW = 11


def ssim_defined(shape, eval_type=None):
    """Whether SSIM is defined on an (H, W) image under `eval_type`: what the shave leaves must hold
    the window."""
    shave = shave_of(*parse_eval_type(eval_type))
    return min(shape) - 2 * shave >= SSIM_WINDOW


def ssim(sr, hr, eval_type=None):
    """Mean SSIM (Gaussian window, sigma 1.5) over the batch, on the pixels the PSNR uses:
    the luma Y channel (ITU-R BT.601, [16, 235]) for `benchmark`, RGB otherwise. None when an image
    is smaller than the window after the shave (`ssim_defined`)."""
    from skimage.metrics import structural_similarity

    if not ssim_defined(np.shape(hr)[-2:], eval_type):
        return None
    protocol, scale = parse_eval_type(eval_type)
    shave = shave_of(protocol, scale)
    values = []
    for s, h in zip(np.asarray(sr, np.float64), np.asarray(hr, np.float64)):
        if protocol == "benchmark":
            s, h = (16 + 255 * (x * LUMA.reshape(3, 1, 1)).sum(0) for x in (s, h))
            values.append(structural_similarity(_crop(s, shave), _crop(h, shave), data_range=255,
                                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
        else:
            values.append(structural_similarity(_crop(s, shave), _crop(h, shave), data_range=1, channel_axis=0,
                                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    return float(np.mean(values))
