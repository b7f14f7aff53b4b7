"""Coordinate helpers of the original code (`utils.make_coord`, `to_pixel_samples`), in NumPy.

Convention (the original's): coordinates are in [-1, 1], `[..., 0]` is the row (height)
axis and `[..., 1]` the column axis, pixel i of an axis with n pixels has its centre at
-1 + (2i + 1)/n, and queries are listed row-major. The float32 arithmetic follows
torch's order of operations so that both backends see the original's exact bits.
"""
import numpy as np


def make_coord(shape, ranges=None, flatten=True):
    """Pixel-centre coordinates of a grid of `shape`: (*shape, 2), or (prod(shape), 2) if flatten."""
    seqs = []
    for i, n in enumerate(shape):
        v0, v1 = (-1, 1) if ranges is None else ranges[i]
        r = (v1 - v0) / (2 * n)
        # torch: v0 + r + (2 * r) * arange(n).float(), with each Python scalar cast to float32
        seqs.append(np.float32(v0 + r) + np.float32(2 * r) * np.arange(n, dtype=np.float32))
    grid = np.stack(np.meshgrid(*seqs, indexing="ij"), axis=-1)
    return grid.reshape(-1, grid.shape[-1]) if flatten else grid


def make_coord_window(shape, top, left, height, width):
    """`make_coord(shape, flatten=False)[top:top + height, left:left + width]`, bit for bit, without
    making the whole grid: the centres of one window (a tile, liif/inference/tiled.py) of a `shape` grid."""
    seqs = []
    for n, start, size in zip(shape, (top, left), (height, width)):
        r = 2 / (2 * n)
        seqs.append(np.float32(-1 + r) + np.float32(2 * r) * np.arange(start, start + size, dtype=np.float32))
    return np.stack(np.meshgrid(*seqs, indexing="ij"), axis=-1)


def make_cell(shape, n):
    """The cell of every query of an output of `shape` (H, W): (n, 2) filled with [2/H, 2/W]."""
    cell = np.empty((n, 2), dtype=np.float32)
    cell[:, 0] = 2 / shape[0]
    cell[:, 1] = 2 / shape[1]
    return cell


def to_pixel_samples(img):
    """(3, H, W) image -> coordinates (HW, 2) and RGB values (HW, 3), both row-major."""
    coord = make_coord(img.shape[-2:])
    rgb = img.reshape(3, -1).T
    return coord, np.ascontiguousarray(rgb)
