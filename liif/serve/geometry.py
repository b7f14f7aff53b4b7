"""The viewer's pixel grid: which queries a view (scale, offset, viewport size) asks the model for.

A view at scale s of an h x w image is a window onto the full upscale of that image to
`grid(h, w, s)` = (H, W) = (round(h*s), round(w*s)): viewport pixel (r, c) is pixel (top + r,
left + c) of that upscale. Its query is that pixel's centre (`make_coord` of the full grid,
sliced: the same float32 bits `Model.upscale` uses) and its cell one viewport pixel (2/H, 2/W).
So a rendered viewport is the same crop of `upscale(image, (H, W))`; pixels of the viewport
that fall outside the image are simply not rendered.
"""
import math
from dataclasses import dataclass

import numpy as np

from liif.coords import make_coord


def grid(hw, scale):
    """(H, W): the size of the full upscale of an image of size `hw` at `scale`."""
    return tuple(max(1, int(round(n * scale))) for n in hw)


@dataclass(frozen=True)
class Region:
    """Rows [top, top+height) and columns [left, left+width) of the full upscale to `grid` = (H, W)."""
    grid: tuple
    top: int
    left: int
    height: int
    width: int

    @property
    def size(self):
        return self.height * self.width

    def as_dict(self):
        return {"grid": list(self.grid), "top": self.top, "left": self.left, "height": self.height, "width": self.width}


def visible(full, top, left, height, width):
    """The part of a `height` x `width` viewport at (top, left) of the grid `full` that holds image pixels."""
    r0, c0 = max(0, top), max(0, left)
    r1, c1 = min(full[0], top + height), min(full[1], left + width)
    return Region(tuple(full), r0, c0, max(0, r1 - r0), max(0, c1 - c0))


def coarse(region, hw, scale, factor):
    """The same part of the image on the grid of scale/factor: a preview with factor^2 times fewer
    queries, which the browser stretches over the viewport until the full render arrives."""
    small = grid(hw, scale / factor)
    ky, kx = small[0] / region.grid[0], small[1] / region.grid[1]
    r0, c0 = math.floor(region.top * ky), math.floor(region.left * kx)
    r1 = min(small[0], math.ceil((region.top + region.height) * ky))
    c1 = min(small[1], math.ceil((region.left + region.width) * kx))
    return Region(small, r0, c0, max(0, r1 - r0), max(0, c1 - c0))


def tiles(region, rows):
    """`region` cut into bands of `rows` rows, rendered and sent one after the other."""
    return [Region(region.grid, r, region.left, min(rows, region.top + region.height - r), region.width)
            for r in range(region.top, region.top + region.height, rows)]


def queries(region):
    """coord (1, n, 2) and cell (1, n, 2) of the region's pixels, row-major, as `Model.upscale` makes them."""
    height, width = region.grid
    rows = make_coord((height,))[region.top:region.top + region.height, 0]
    cols = make_coord((width,))[region.left:region.left + region.width, 0]
    coord = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(1, -1, 2)
    cell = np.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / height, 2 / width
    return coord, cell
