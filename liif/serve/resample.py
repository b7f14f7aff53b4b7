"""Pillow's bicubic resize, computed for one crop of the output only.

The bicubic pane (the LR image upscaled) and the ground-truth pane (the HR image brought to the
view's grid) need a 512x512 window of a resize that can be 12000x18000 pixels at x50: the full
`Image.resize` would not fit in memory. Pillow's resampling is separable, each output pixel a
weighted sum of a few input pixels, so the window is `Wy @ image @ Wx.T` with the rows of Pillow's
weight matrices for the window's rows and columns (its coefficients, a = -0.5, antialiased when
shrinking; horizontal pass first, rounded to 8 bits between the passes, as Pillow does), computed
as gathers of the few pixels each output pixel reads. Equal to
the same crop of `Image.resize(..., BICUBIC)` within one grey level (Pillow uses fixed point).
"""
import numpy as np


def _bicubic(x, a=-0.5):
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def weights(n_in, n_out, start, count):
    """Rows start..start+count of Pillow's (n_out, n_in) bicubic weight matrix (ImagingResample),
    sparse: input indices (count, K) and their weights (count, K), zero past each row's window."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    centre = (np.arange(start, start + count) + 0.5) * scale
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's (int) cast: truncation
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    taps = lo[:, None] + np.arange(int(np.ceil(2 * support)) + 2)[None]
    w = _bicubic((taps - centre[:, None] + 0.5) / filterscale) * (taps < hi[:, None])
    total = w.sum(1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    return np.minimum(taps, n_in - 1), w


def _round8(x):
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def resize_crop(image, region):
    """The `region` (geometry.Region) of `image` (uint8 HxWx3) resized by Pillow bicubic to `region.grid`."""
    if region.size == 0:
        return np.zeros((region.height, region.width, 3), np.uint8)
    h, w = image.shape[:2]
    rows, wy = weights(h, region.grid[0], region.top, region.height)    # (height, K)
    cols, wx = weights(w, region.grid[1], region.left, region.width)    # (width, K)
    used = np.unique(rows)  # only the input rows the window reads, horizontally first (as Pillow)
    # image[used][:, cols]: (len(used), width, K, 3), each output column's K input pixels
    wide = _round8((image[used][:, cols] * wx[None, :, :, None]).sum(2))    # (len(used), width, 3)
    where = np.searchsorted(used, rows)                                      # (height, K) rows of `wide`
    return _round8((wide[where] * wy[:, :, None, None]).sum(1))             # (height, width, 3)
