"""Tiled inference: any input size on a bounded memory budget, with the untiled output.

Everything that predicts (`Model.upscale`, `Model.query`, task=demo, task=test, the viewer)
goes through `Encoding`: the low-resolution input is cut into tiles ("cores", in input
pixels), and each tile is encoded and decoded on its own. Why the result is exact (details
and numbers in docs/tiling.md):

- The encoder is a stack of convolutions, so its output at a pixel depends only on the input
  within its receptive radius, `encoder.halo` (each 3x3 convolution adds one pixel; derived
  in liif/models/edsr.py and rdn.py). A tile's encoder input is its core widened by the halo
  plus a `margin` (below), cut at the image's true border only: features farther than `halo`
  from the tile's cut edges equal the whole image's, and zero padding happens where it
  happens for the whole image.
- A query only reads latent pixels near its own, as far as the decoder declares (`net.reach`,
  the decoder contract of liif/models/decoder.py: LIIF's ensemble one pixel to each side and
  its 3x3 unfolding one more, MetaSR half a query cell back, LTE's convolutions and bilinear
  skip). `margin` is that reach plus one for rounding; the latent kept for a tile is its core
  widened by `margin` (`encode`'s `crop`).
- Each query is decoded with the tile that holds its centre, through a latent that keeps the
  whole map's geometry (`encode`'s `window`: the decoder's lookups index the whole H x W grid
  and subtract the tile's offset), so every lookup picks the same pixel, with the same
  relative coordinate, as untiled: the same arithmetic, up to float rounding in the convolutions.

The engine knows nothing else of the model: the encoder's `halo`, `out_scale` and costs, and the
decoder's `encode`, `decode`, `reach` and `footprint`.

Memory: a tile's cost is estimated from those declarations (`tile_bytes`) and tiles are as large as
`max_memory` allows (`plan`), with the fewest halo pixels. One tile covering the image is
exactly the untiled computation. The upscaled image is written in place, as uint8, tile by
tile; the decoder runs on chunks of at most `bsize` queries.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from liif.errors import BudgetTooSmall, ConfigError
from liif.coords import make_coord
from liif.inference.memory import release_freed_memory, resolve_budget
from liif.models.decoder import Latent
from liif.sizes import format_bytes
from liif.value_range import from_model_range, image_to_model_range

if TYPE_CHECKING:  # api imports this module at run time
    from liif.inference.api import Model

MIN_TILE = 16          # the smallest core side the planner uses (smaller only when the image is)
MIN_CHUNK = 1024       # the fewest queries per decoder call the planner uses
SLACK = 1.4            # what the allocator keeps of freed blocks across tiles, framework workspace

MaxMemory = Union[int, float, str]  # bytes, a size such as "2GB" or "512MB", or "auto" (half the free memory)
Progress = Union[bool, Callable[[int, int], object]]  # a bar over the tiles; a function also gets (done, total)
Span = Tuple[int, int]  # (start, stop) in input pixels


@dataclass
class Plan:
    """A tiling of one input: what `plan` returns.

    Attributes:
        rows, cols: the tile cores, as (start, stop) input rows and columns.
        halo: the encoder's receptive radius, in input pixels.
        margin: the features kept around each core, in input pixels.
        bsize: queries per decoder call.
        budget: the memory budget, in bytes.
        estimate: bytes the largest tile needs, by `tile_bytes`.
        build_block: latent pixels per block of the decoder's precomputation (None: none).
    """
    rows: List[Span]
    cols: List[Span]
    halo: int
    margin: int
    bsize: int
    budget: int
    estimate: int
    build_block: Optional[int] = None

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)


def margin_for(net: Any, max_cell: float) -> int:
    """Latent pixels kept around a tile: what the decoder's lookups may reach beyond a query's own
    pixel (`net.reach`, liif/models/decoder.py), plus one for rounding.

    Args:
        net: the network.
        max_cell: the largest query cell, in latent pixels.
    """
    return int(net.reach(max_cell)) + 1


def build_block_for(net: Any, budget: float, dtype_bytes: int = 4) -> Optional[int]:
    """Latent pixels per block of the decoder's precomputation (`encode`'s `block`; LIIF's latent
    table): what is alive while a block is built within a quarter of the budget, and never more than
    the model's default (None: the decoder builds nothing in blocks)."""
    footprint = net.footprint()
    if not footprint.build_floats:
        return None
    return max(1, min(footprint.build_block, int(budget / 4 / (SLACK * dtype_bytes) / footprint.build_floats)))


def tile_bytes(net: Any, in_rows: int, in_cols: int, feat_rows: int, feat_cols: int, bsize: int,
               build_block: Optional[int] = None, dtype_bytes: int = 4) -> int:
    """Estimated peak bytes of one tile: the encoder's forward on its input, then the kept latent
    with the decoder's precomputation (a block of rows at a time) or one chunk of queries.

    Args:
        net: the network.
        in_rows, in_cols: the encoder's input (core, margin and halo), in input pixels.
        feat_rows, feat_cols: the latent kept (core and margin), in input pixels.
        bsize: queries per decoder call.
        build_block: as `Plan.build_block` (None: the model's default).
        dtype_bytes: 4 (float32) or 8 (float64).

    Returns:
        Bytes, `SLACK` included.
    """
    s = net.encoder.out_scale
    footprint = net.footprint()
    kept_pixels = feat_rows * feat_cols * s * s
    encode = net.encoder.activation_floats * in_rows * in_cols
    encode += net.encoder.out_dim * kept_pixels  # the kept copy, made while the rest is alive
    build = 0
    if footprint.build_floats:
        row = feat_cols * s  # built a block of whole rows at a time
        rows = max(1, min(feat_rows * s, (build_block or footprint.build_block) // row))
        build = footprint.build_floats * rows * row
    decode = footprint.latent_floats * kept_pixels + max(build, footprint.query_floats * bsize)
    return int(SLACK * dtype_bytes * max(encode, decode))


def _spans(n: int, size: int) -> List[Span]:
    """[0, n) cut into ceil(n / size) near-equal (start, stop) spans."""
    count = max(1, math.ceil(n / size))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count)]


def _widest(spans: List[Span], n: int, by: int) -> int:
    """Length of the longest span widened by `by` on each side, cut at [0, n)."""
    return max(min(n, b + by) - max(0, a - by) for a, b in spans)


def _widened(spans: List[Span], n: int, by: int) -> int:
    """Total length of the spans widened by `by` on each side, cut at [0, n)."""
    return sum(min(n, b + by) - max(0, a - by) for a, b in spans)


def plan(net: Any, height: int, width: int, max_memory: MaxMemory = "auto", bsize: int = 30000,
         max_cell: float = 1.0, tile: Optional[int] = None, available: Optional[int] = None,
         dtype_bytes: int = 4) -> Plan:
    """The split of a height x width input with the fewest encoded pixels (core + halo) whose
    every tile fits `max_memory`.

    Args:
        net: the network.
        height, width: the input's size, in pixels.
        max_memory: bytes, a size such as "2GB", or "auto" (half of `available`).
        bsize: the most queries per decoder call.
        max_cell: the largest query cell, in latent cells.
        tile: force square cores of that side (tests, benchmarks).
        available: bytes free on the device (None: the CPU's, measured).
        dtype_bytes: 4 (float32) or 8 (float64).

    Returns:
        The `Plan`.

    Raises:
        BudgetTooSmall: not even the smallest tiles fit; the message names the minimum.
    """
    budget = resolve_budget(max_memory, available)
    halo = net.encoder.halo
    margin = margin_for(net, max_cell)
    per_query = SLACK * dtype_bytes * net.footprint().query_floats
    chunk = max(1, min(bsize, int(budget / 4 / per_query)))  # a quarter of the budget at most
    chunk = max(chunk, min(bsize, MIN_CHUNK))
    build_block = build_block_for(net, budget, dtype_bytes)

    def cost(rows: List[Span], cols: List[Span]) -> int:  # of the largest tile: its features and encoder input, cut at the image's border
        feat_r, feat_c = _widest(rows, height, margin), _widest(cols, width, margin)
        in_r, in_c = _widest(rows, height, margin + halo), _widest(cols, width, margin + halo)
        return tile_bytes(net, in_r, in_c, feat_r, feat_c, chunk, build_block, dtype_bytes)

    if tile is not None:
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
            raise ConfigError(f"infer.tile (tile=) must be a positive number of input pixels or null, got {tile!r}")
        rows, cols = _spans(height, tile), _spans(width, tile)
        return Plan(rows, cols, halo, margin, chunk, budget, cost(rows, cols), build_block)
    best = None
    for n_rows in range(1, math.ceil(height / min(height, MIN_TILE)) + 1):
        rows = _spans(height, math.ceil(height / n_rows))
        # the fewest column tiles that fit with these rows (cost falls as tiles narrow)
        lo, hi = 1, math.ceil(width / min(width, MIN_TILE))
        if cost(rows, _spans(width, math.ceil(width / hi))) > budget:
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            if cost(rows, _spans(width, math.ceil(width / mid))) <= budget:
                hi = mid
            else:
                lo = mid + 1
        cols = _spans(width, math.ceil(width / lo))
        # encoded pixels, plus a little per tile (the decoder's table margin, the calls)
        work = _widened(rows, height, margin + halo) * _widened(cols, width, margin + halo) + 256 * len(rows) * len(cols)
        if best is None or work < best[0]:
            best = (work, rows, cols)
        if len(rows) == 1 and len(cols) == 1:
            break  # one tile: nothing does less work
    if best is None:
        side_r, side_c = min(height, MIN_TILE), min(width, MIN_TILE)
        needed = cost(_spans(height, side_r), _spans(width, side_c))  # the smallest split the planner tries
        raise BudgetTooSmall(f"max_memory={format_bytes(budget)} is too small for this model: one {side_r}x{side_c} "
                             f"tile with its {halo}-pixel halo needs about {format_bytes(needed)}; "
                             f"use max_memory={math.ceil(needed / (1 << 20))}MB or more")
    _, rows, cols = best
    return Plan(rows, cols, halo, margin, chunk, budget, cost(rows, cols), build_block)


class Encoding:
    """An input prepared for tiled decoding: `query` any coordinates, `render` an upscaled image.

    `Encoding.of_image` and `Encoding.of_array` make one. Each tile is encoded when a query first
    needs it; with `cache=True` its features are kept (the viewer: encode once, query often; memory
    grows with the tiles kept), else only the last tile's are.

    Args:
        model: the `liif.inference.api.Model` that encodes and decodes.
        source: `source(top, bottom, left, right)` returns that part of the normalised input as
            float32 (1, 3, rows, cols).
        height, width: the input's size, in pixels.
        max_memory, bsize, tile, progress: as `Model.upscale`.
        cache: keep every tile's features (and LIIF's latent table) for later queries.
    """

    def __init__(self, model: "Model", source: Callable[[int, int, int, int], np.ndarray], height: int, width: int,
                 max_memory: MaxMemory = "auto", bsize: int = 30000, tile: Optional[int] = None, cache: bool = False,
                 progress: Progress = True) -> None:
        self.model, self.source, self.height, self.width = model, source, height, width
        self.max_memory, self.bsize, self.tile, self.cache, self.progress = max_memory, bsize, tile, cache, progress
        self._latents: Dict[tuple, Latent] = {}  # (tile row, tile col, margin, halo, plan) -> its latent
        self._plans: Dict[int, Plan] = {}

    @classmethod
    def of_image(cls, model: "Model", image: np.ndarray, **options: Any) -> "Encoding":
        """A uint8 (H, W, 3) image, normalised per tile exactly as `Model.upscale` normalises it whole.

        Args:
            model: a `liif.inference.api.Model`.
            image: uint8 (H, W, 3).
            **options: the constructor's max_memory, bsize, tile, cache, progress.
        """
        def source(top: int, bottom: int, left: int, right: int) -> np.ndarray:
            return np.ascontiguousarray(image_to_model_range(image[top:bottom, left:right]).transpose(2, 0, 1)[None])
        return cls(model, source, image.shape[0], image.shape[1], **options)

    @classmethod
    def of_array(cls, model: "Model", inp: np.ndarray, **options: Any) -> "Encoding":
        """A normalised float32 (3, h, w) array (one image of `Model.query`'s batch); arguments as `of_image`."""
        def source(top: int, bottom: int, left: int, right: int) -> np.ndarray:
            return np.ascontiguousarray(inp[None, :, top:bottom, left:right])
        return cls(model, source, inp.shape[1], inp.shape[2], **options)

    # --- planning and features ---------------------------------------------------------------

    def plan(self, max_cell: float = 1.0) -> Plan:
        """The tiling for queries whose cells span at most `max_cell` latent cells."""
        net = self.model.net
        margin = margin_for(net, max_cell)
        if margin not in self._plans:
            dtype_bytes = 8 if self._anchor_is_float64() else 4
            self._plans[margin] = plan(net, self.height, self.width, self.max_memory, self.bsize, max_cell, self.tile,
                                       available=self.model.backend.free_device_memory(self.model.device),
                                       dtype_bytes=dtype_bytes)
        return self._plans[margin]

    def _anchor_is_float64(self) -> bool:
        return "64" in str(getattr(self.model._anchor(), "dtype", ""))

    def _latent(self, p: Plan, i: int, j: int) -> Latent:
        """Tile (i, j)'s latent, encoded now unless kept: the encoder's input is the core widened by
        the margin and the halo (cut at the image's border), its output cut to the core and margin."""
        key = (i, j, p.margin, p.halo, id(p))
        if key in self._latents:
            return self._latents[key]
        if not self.cache:
            self._latents.clear()  # the previous tile's latent goes before the next is encoded
            release_freed_memory()
        net, backend = self.model.net, self.model.backend
        (a, b), (c, d) = p.rows[i], p.cols[j]
        fa, fb = max(0, a - p.margin), min(self.height, b + p.margin)  # the latent kept
        fc, fd = max(0, c - p.margin), min(self.width, d + p.margin)
        ia, ib = max(0, fa - p.halo), min(self.height, fb + p.halo)  # the encoder's input
        ic, id_ = max(0, fc - p.halo), min(self.width, fd + p.halo)
        s = net.encoder.out_scale
        crop = ((fa - ia) * s, (fb - ia) * s, (fc - ic) * s, (fd - ic) * s)
        whole = (fa, fb, fc, fd) == (0, self.height, 0, self.width)  # else a window of the whole map
        window = None if whole else (self.height * s, self.width * s, fa * s, fc * s)
        inp = backend.tensor(self.source(ia, ib, ic, id_), like=self.model._anchor())
        latent = net.encode(inp, crop=crop, window=window, block=p.build_block)
        del inp
        latent.maps = {name: backend.materialize(t) for name, t in latent.maps.items()}
        if not self.cache:
            release_freed_memory()  # the encoder's freed maps, before the decoder's differently sized blocks
        self._latents[key] = latent
        return latent

    def prepare(self, max_cell: float = 1.0) -> "Encoding":
        """Encode every tile now, for queries with cells up to `max_cell` latent pixels (with
        `cache=True`: a viewer encodes once, then every query only decodes)."""
        p = self.plan(max_cell)
        with self._inference():
            for i in range(len(p.rows)):
                for j in range(len(p.cols)):
                    self._latent(p, i, j)
        return self

    def _tile_of(self, positions: np.ndarray, spans: List[Span]) -> np.ndarray:
        """The tile index of each input-pixel position."""
        starts = np.array([a for a, _ in spans])
        return np.searchsorted(starts, positions, side="right") - 1

    # --- decoding ----------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of the tiles' latents kept (`cache=True` keeps every tile's)."""
        return sum(latent.numel() for latent in self._latents.values()) * (8 if self._anchor_is_float64() else 4)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        model, backend = self.model, self.model.backend
        model.net.eval()
        with backend.no_grad(), backend.autocast(model.precision, model.device):
            yield

    def query(self, coord: npt.ArrayLike, cell: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Predict RGB at any coordinates.

        Args:
            coord: (Q, 2) query coordinates, (row, col) in [-1, 1].
            cell: (Q, 2) the query cells' sizes in the same units.

        Returns:
            (Q, 3) float32 in the normalised space.
        """
        with self._inference():
            return self._query(coord, cell)

    def _query(self, coord: npt.ArrayLike, cell: npt.ArrayLike) -> npt.NDArray[np.float32]:
        coord, cell = np.asarray(coord, np.float32), np.asarray(cell, np.float32)
        max_cell = float(max(np.abs(cell[:, 0]).max(initial=0) * self.height / 2,
                             np.abs(cell[:, 1]).max(initial=0) * self.width / 2))
        p = self.plan(max_cell)
        # the input pixel under each query's centre (float64: the tile a query belongs to only has to be
        # near its lookups, which `margin` covers with a cell to spare)
        rows = np.clip(np.floor((coord[:, 0].astype(np.float64) + 1) * self.height / 2), 0, self.height - 1)
        cols = np.clip(np.floor((coord[:, 1].astype(np.float64) + 1) * self.width / 2), 0, self.width - 1)
        tile = self._tile_of(rows, p.rows) * len(p.cols) + self._tile_of(cols, p.cols)
        order = np.argsort(tile, kind="stable")
        bounds = np.searchsorted(tile[order], np.arange(p.n_tiles + 1))
        out = np.empty((len(coord), 3), np.float32)
        backend = self.model.backend
        net = self.model.net
        for t in self._tiles(p, skip=lambda t: bounds[t] == bounds[t + 1]):
            latent = self._latent(p, t // len(p.cols), t % len(p.cols))
            idx = order[bounds[t]:bounds[t + 1]]
            like = self.model._anchor()
            stage = max(p.bsize, p.budget // 16 // 12)  # queries staged on the device between copies to the host
            for s0 in range(0, len(idx), stage):
                staged = idx[s0:s0 + stage]
                # chunk results stay on the device, one copy back per stage (a GPU is not waited for per chunk)
                buf = backend.tensor(np.empty((1, len(staged), 3), np.float32), like=like)
                for start in range(0, len(staged), p.bsize):
                    part = staged[start:start + p.bsize]
                    pred = net.decode(latent, backend.tensor(coord[part][None], like=like),
                                      backend.tensor(cell[part][None], like=like))
                    buf[:, start:start + len(part)] = pred.float()
                    buf = backend.materialize(buf)
                out[staged] = backend.to_numpy(buf)[0]
            del latent  # not alive while the next tile's is encoded (the loop variable would keep it)
        return out

    def render(self, size: Tuple[int, int], out: Optional[np.ndarray] = None) -> npt.NDArray[np.uint8]:
        """The image upscaled, tile by tile.

        Args:
            size: the output's (height, width).
            out: a uint8 (height, width, 3) array to write into (None: a new one).

        Returns:
            `out`, uint8 (height, width, 3) RGB.
        """
        with self._inference():
            return self._render(size, out)

    def _render(self, size: Tuple[int, int], out: Optional[np.ndarray]) -> npt.NDArray[np.uint8]:
        height, width = size
        if out is None:
            out = np.empty((height, width, 3), np.uint8)
        p = self.plan(max(self.height / height, self.width / width))
        # output pixel j belongs to the tile holding input pixel floor((j + 1/2) * h / H), exact in integers
        out_rows = self._out_spans(p.rows, self.height, height)
        out_cols = self._out_spans(p.cols, self.width, width)
        rows, cols = make_coord((height,))[:, 0], make_coord((width,))[:, 0]
        backend, net = self.model.backend, self.model.net
        cc = min(width, p.bsize)
        cell = np.empty((1, p.bsize, 2), np.float32)
        cell[..., 0], cell[..., 1] = 2 / height, 2 / width
        skip = lambda t: out_rows[t // len(p.cols)][0] == out_rows[t // len(p.cols)][1] or \
            out_cols[t % len(p.cols)][0] == out_cols[t % len(p.cols)][1]  # noqa: E731
        done = 0
        for t in self._tiles(p, skip):
            (r0, r1), (c0, c1) = out_rows[t // len(p.cols)], out_cols[t % len(p.cols)]
            latent = self._latent(p, t // len(p.cols), t % len(p.cols))
            like = self.model._anchor()
            # chunks: whole rows of the tile's block (or parts of one row, when a row exceeds bsize), staged
            # on the device in bands of rows, one copy back per band (a GPU is not waited for per chunk)
            block_w = c1 - c0
            step_c = min(block_w, cc)
            step_r = max(1, p.bsize // block_w) if step_c == block_w else 1
            band = max(step_r, (max(p.bsize, p.budget // 16 // 3) // block_w) // step_r * step_r)
            for y0 in range(r0, r1, band):
                y1 = min(r1, y0 + band)
                buf = backend.tensor(np.empty(((y1 - y0) * block_w, 3), np.uint8), like=like)
                for y in range(y0, y1, step_r):
                    for x in range(c0, c1, step_c):
                        ys, xs = np.arange(y, min(y1, y + step_r)), np.arange(x, min(c1, x + step_c))
                        coord = np.stack(np.meshgrid(rows[ys], cols[xs], indexing="ij"), -1).reshape(1, -1, 2)
                        pred = net.decode(latent, backend.tensor(coord, like=like),
                                          backend.tensor(cell[:, :coord.shape[1]], like=like))[0]
                        at = (y - y0) * block_w + (x - c0)  # a contiguous range of the band: whole rows, or one row's part
                        # rounded, not floored (the original demo truncates)
                        buf[at:at + coord.shape[1]] = backend.to_uint8(from_model_range(pred.float()))
                        buf = backend.materialize(buf)
                        done += coord.shape[1]
                        if callable(self.progress):  # the demo's estimate (liif/inference/demo.py)
                            self.progress(done, height * width)
                out[y0:y1, c0:c1] = backend.to_numpy(buf).reshape(y1 - y0, block_w, 3)
            del latent, buf  # not alive while the next tile's latent is encoded (loop variables would keep them)
        return out

    @staticmethod
    def _out_spans(spans: List[Span], n_in: int, n_out: int) -> List[Span]:
        """Output (start, stop) per input span: output j goes where (2j + 1) * n_in // (2 * n_out) falls."""
        def first_at_or_after(a: int) -> int:  # the smallest j with (2j + 1) * n_in // (2 n_out) >= a
            return min(n_out, max(0, -(-(2 * a * n_out - n_in) // (2 * n_in))))
        return [(first_at_or_after(a), first_at_or_after(b)) for a, b in spans]

    def _tiles(self, p: Plan, skip: Callable[[int], bool]) -> Iterator[int]:
        """Tile numbers (row-major) that have work, with a progress bar when there are several."""
        todo = [t for t in range(p.n_tiles) if not skip(t)]
        return tqdm(todo, desc="tiles", unit="tile", leave=False, delay=2,
                    disable=None if self.progress and len(todo) > 1 else True)
