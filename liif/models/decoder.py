"""The decoder contract: what every model (LIIF, MetaSR, LTE ...) offers the code that runs it.

Training, the tiled engine (liif/inference/tiled.py), the memory planner and the viewer use a
model only through these four members, so a new decoder needs no change anywhere else:

- `encode(inp, crop=None, window=None, block=None) -> Latent`: run the encoder on `inp`
  (B, 3, h, w), keep the part `crop` = (top, bottom, left, right) of its output (the tiled
  engine encodes a tile with a halo and keeps less), then compute what the decoder precomputes
  per latent pixel (LIIF: its first layer's table; LTE: amplitude and frequency maps), in blocks
  of at most `block` latent pixels where it has a choice (a memory budget; None: the model's
  own default). `window` = (H, W, top, left): the kept part lies at (top, left) of an H x W
  latent map, whose geometry every lookup then uses (None: the kept part is the whole map).
- `decode(latent, coord, cell) -> rgb`: (B, Q, 3) for queries `coord`, `cell` (B, Q, 2), in
  the whole map's [-1, 1] coordinates, any number of queries per call.
- `reach(max_cell) -> int`: latent pixels beyond a query's own that decoding it may read, for
  cells up to `max_cell` latent pixels, including what the decoder's own precomputation at
  the crop's cut edges spoils (a 3x3 convolution there sees zero padding). The tiled engine
  keeps `reach(max_cell) + 1` pixels around each tile (one for rounding).
- `footprint() -> Footprint`: the memory it needs, per latent pixel and per query.

The encoder's own reach and cost are its `halo`, `activation_floats`, `out_dim` and `out_scale`
(liif/models/edsr.py, rdn.py).
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

Window = Tuple[int, int, int, int]  # (H, W, top, left): a part at (top, left) of an H x W map
Crop = Tuple[int, int, int, int]    # (top, bottom, left, right) of an encoder's output


@dataclass
class Latent:
    """What `decode` reads: maps on one latent grid (each (B, C, h, w)), named by the decoder
    that made them, and where that grid lies in the whole map.

    Attributes:
        maps: name -> tensor; every map has the same h x w (LIIF: 'feat' and 'table'; MetaSR:
            'feat'; LTE: 'coef', 'freq' and the input 'inp' for its skip).
        window: (H, W, top, left), or None: the maps are the whole map.
    """
    maps: Dict[str, Any]
    window: Optional[Window] = None

    def __getitem__(self, name: str) -> Any:
        return self.maps[name]

    @property
    def whole_size(self) -> Tuple[int, int]:
        """(H, W) of the whole latent map."""
        if self.window is not None:
            return self.window[0], self.window[1]
        h, w = next(iter(self.maps.values())).shape[-2:]
        return int(h), int(w)

    def numel(self) -> int:
        """Elements held, every map together (bytes: times the element size)."""
        total = 0
        for t in self.maps.values():
            n = 1
            for d in t.shape:
                n *= int(d)
            total += n
        return total


@dataclass(frozen=True)
class Footprint:
    """A decoder's memory, in floats (the planner multiplies by the element size and a slack).

    Attributes:
        latent_floats: per latent pixel kept while decoding (the encoder's features if kept,
            tables, maps), the peak of `encode`'s part after the encoder included.
        build_floats: per latent pixel alive while a block of the precomputation is built
            (0: nothing is built in blocks).
        build_block: the default `block` of `encode`, latent pixels (0: no blocks).
        query_floats: per query alive at the decoder's peak.
    """
    latent_floats: int
    build_floats: int = 0
    build_block: int = 0
    query_floats: int = 16


def crop_map(x: Any, crop: Optional[Crop]) -> Any:
    """`x` (B, C, h, w) cut to `crop` (a copy, so the rest can be freed); no crop, or a crop of the
    whole map, is `x` itself."""
    if crop is not None:
        top, bottom, left, right = crop
        if (top, bottom, left, right) != (0, x.shape[2], 0, x.shape[3]):
            x = x[:, :, top:bottom, left:right].clone()
    return x
