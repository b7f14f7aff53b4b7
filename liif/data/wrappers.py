"""The original `sr-implicit-*` wrappers: image(s) -> {'inp', 'coord', 'cell', 'gt'} samples.

Every sample is a dict of float32 arrays: 'inp' (3, h, w) and 'gt' (Q, 3) in [0, 1]
(uint8 / 255), 'coord' (Q, 2) pixel centres [row, col] in [-1, 1] and 'cell' (Q, 2) =
[2/H_hr, 2/W_hr]. The geometry is the original's (notes 4.3-4.5); the randomness is not:
item i of epoch e draws from `np.random.default_rng([seed, e, i])`, so a sample does not
depend on the order of access, the worker count or the framework. Each wrapper splits an
item into `draw(...)` (all random numbers) and `apply(..., draws)` (deterministic), so
recorded draws of the original can be replayed through `apply`.
"""
import math

import numpy as np

from liif.coords import make_cell, make_coord
from liif.data.image_folder import positive_count
from liif.data.resize import resize_bicubic, resized_shape
from liif.errors import ConfigError, DataError

NO_FLIPS = (False, False, False)


def to_float(img):
    """uint8 -> float32 in [0, 1], bit-identical to torchvision's ToTensor (float32 / 255)."""
    return img.astype(np.float32) / np.float32(255)


def augment(img, flips):
    """The original's flips on an HWC image: 'hflip' flips rows, 'vflip' columns, 'dflip' transposes."""
    hflip, vflip, dflip = flips
    if hflip:
        img = img[::-1]
    if vflip:
        img = img[:, ::-1]
    if dflip:
        img = img.transpose(1, 0, 2)
    return img


def make_sample(lr, hr, sample_idx=None):
    """uint8 LR/HR crops -> the sample dict; `sample_idx` picks pixels of `hr` (row-major)."""
    coord = make_coord(hr.shape[:2])
    gt = to_float(hr).reshape(-1, 3)
    if sample_idx is not None:
        coord, gt = coord[sample_idx], gt[sample_idx]
    return {
        "inp": np.ascontiguousarray(to_float(lr).transpose(2, 0, 1)),
        "coord": np.ascontiguousarray(coord),
        "cell": make_cell(hr.shape[:2], len(coord)),
        "gt": np.ascontiguousarray(gt),
    }


class Wrapper:
    """Common part: length, per-item generator, epoch, the draw/apply split of `__getitem__`."""

    def __init__(self, dataset, augment=False, sample_q=None, seed=0):
        self.dataset, self.augment, self.sample_q = dataset, augment, positive_count("sample_q", sample_q)
        self.seed, self.epoch = int(seed), 0

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def rng(self, i):
        return np.random.default_rng([self.seed, self.epoch, i])

    def _index(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        return i % len(self)

    def _draw_flips(self, rng):
        # the original draws hflip, vflip, dflip in this order, after the crop offsets
        return tuple(bool(f) for f in rng.random(3) < 0.5) if self.augment else NO_FLIPS

    def _draw_samples(self, rng, n_pixels):
        if self.sample_q is None:
            return None
        if self.sample_q > n_pixels:
            raise ConfigError(f"sample_q={self.sample_q} is more than the {n_pixels} pixels of the HR crop")
        return rng.choice(n_pixels, self.sample_q, replace=False)


class SRImplicitDownsampled(Wrapper):
    """`sr-implicit-downsampled`: LR made from the HR by Pillow bicubic at a scale in [min, max]."""

    def __init__(self, dataset, inp_size=None, scale_min=1, scale_max=None, augment=False,
                 sample_q=None, seed=0):
        super().__init__(dataset, augment, sample_q, seed)
        self.inp_size, self.scale_min = positive_count("inp_size", inp_size), scale_min
        self.scale_max = scale_min if scale_max is None else scale_max

    def hr_crop_shape(self, hr_shape, scale):
        if self.inp_size is None:  # test mode: the largest LR the image allows, HR cut top-left to match
            h_lr, w_lr = (math.floor(n / scale + 1e-9) for n in hr_shape[:2])
            return round(h_lr * scale), round(w_lr * scale)
        side = round(self.inp_size * scale)
        return side, side

    def draw(self, i, hr_shape):
        rng = self.rng(i)
        scale = float(rng.uniform(self.scale_min, self.scale_max))
        h, w = self.hr_crop_shape(hr_shape, scale)
        x0 = y0 = None
        if self.inp_size is not None:
            if h > hr_shape[0] or w > hr_shape[1]:
                raise DataError(f"image {hr_shape[:2]} is smaller than the {h}x{w} crop (scale {scale:.3f})")
            x0 = int(rng.integers(0, hr_shape[0] - h, endpoint=True))
            y0 = int(rng.integers(0, hr_shape[1] - w, endpoint=True))
        flips = self._draw_flips(rng)
        return {"scale": scale, "x0": x0, "y0": y0, "flips": flips, "sample_idx": self._draw_samples(rng, h * w)}

    def apply(self, img, draws):
        s = draws["scale"]
        if self.inp_size is None:
            h_lr, w_lr = (math.floor(n / s + 1e-9) for n in img.shape[:2])
            hr = img[:round(h_lr * s), :round(w_lr * s)]
            lr = resize_bicubic(hr, (h_lr, w_lr))
        else:
            side, x0, y0 = round(self.inp_size * s), draws["x0"], draws["y0"]
            hr = img[x0:x0 + side, y0:y0 + side]
            lr = resize_bicubic(hr, (self.inp_size, self.inp_size))
        flips = draws["flips"]
        return make_sample(augment(lr, flips), augment(hr, flips), draws["sample_idx"])

    def __getitem__(self, i):
        i = self._index(i)
        img = self.dataset[i]
        return self.apply(img, self.draw(i, img.shape))


class SRImplicitPaired(Wrapper):
    """`sr-implicit-paired`: given (LR, HR) pairs with an integer scale H_hr // H_lr."""

    def __init__(self, dataset, inp_size=None, augment=False, sample_q=None, seed=0):
        super().__init__(dataset, augment, sample_q, seed)
        self.inp_size = positive_count("inp_size", inp_size)

    def draw(self, i, lr_shape, hr_shape):
        rng = self.rng(i)
        s = hr_shape[0] // lr_shape[0]
        x0 = y0 = None
        if self.inp_size is None:
            n_pixels = lr_shape[0] * s * lr_shape[1] * s
        else:
            x0 = int(rng.integers(0, lr_shape[0] - self.inp_size, endpoint=True))
            y0 = int(rng.integers(0, lr_shape[1] - self.inp_size, endpoint=True))
            n_pixels = (self.inp_size * s) ** 2
        flips = self._draw_flips(rng)
        return {"x0": x0, "y0": y0, "flips": flips, "sample_idx": self._draw_samples(rng, n_pixels)}

    def apply(self, pair, draws):
        lr, hr = pair
        s = hr.shape[0] // lr.shape[0]  # the original assumes an integer scale, read from the heights
        if self.inp_size is None:
            hr = hr[:lr.shape[0] * s, :lr.shape[1] * s]
        else:
            x0, y0, n = draws["x0"], draws["y0"], self.inp_size
            lr = lr[x0:x0 + n, y0:y0 + n]
            hr = hr[x0 * s:(x0 + n) * s, y0 * s:(y0 + n) * s]
        flips = draws["flips"]
        return make_sample(augment(lr, flips), augment(hr, flips), draws["sample_idx"])

    def __getitem__(self, i):
        i = self._index(i)
        lr, hr = self.dataset[i]
        return self.apply((lr, hr), self.draw(i, lr.shape, hr.shape))


class SRImplicitUniformVaried(Wrapper):
    """`sr-implicit-uniform-varied` (CelebA-HQ): the GT size grows linearly with the index."""

    def __init__(self, dataset, size_min, size_max=None, augment=False, gt_resize=None,
                 sample_q=None, seed=0):
        super().__init__(dataset, augment, sample_q, seed)
        self.size_min = size_min
        self.size_max = size_min if size_max is None else size_max
        self.gt_resize = gt_resize

    def gt_size(self, i):
        """Shorter GT edge of item i: deterministic, from size_min (first) to size_max (last)."""
        p = i / (len(self) - 1) if len(self) > 1 else 0.0
        return round(self.size_min + (self.size_max - self.size_min) * p)

    def draw(self, i, hr_shape):
        rng = self.rng(i)
        # only a column flip here (the original's single 'flip(-1)'), i.e. the vflip slot
        flips = (False, bool(rng.random() < 0.5), False) if self.augment else NO_FLIPS
        hw = resized_shape(hr_shape[:2], self.gt_size(i))
        if self.gt_resize is not None:
            hw = resized_shape(hw, self.gt_resize)
        return {"flips": flips, "sample_idx": self._draw_samples(rng, hw[0] * hw[1])}

    def apply(self, pair, draws, i):
        lr, hr = pair
        hr = resize_bicubic(hr, self.gt_size(i))
        lr, hr = augment(lr, draws["flips"]), augment(hr, draws["flips"])
        if self.gt_resize is not None:
            hr = resize_bicubic(np.ascontiguousarray(hr), self.gt_resize)
        return make_sample(lr, hr, draws["sample_idx"])

    def __getitem__(self, i):
        i = self._index(i)
        lr, hr = self.dataset[i]
        return self.apply((lr, hr), self.draw(i, hr.shape), i)
