"""LTE: the Local Texture Estimator (Lee & Jin, CVPR 2022), registered `lte`.

On LIIF's encoder, two 3x3 convolutions estimate per latent pixel an amplitude map (`coef`) and
a frequency map (`freq`), D channels each (D = `hidden_dim`); `phase` maps the query's cell to
D/2 phases. A query reads, at each of the four nearest latent pixels (LIIF's local ensemble),
the D/2 frequencies projected on its offset from that pixel, plus the phase: the MLP gets the
amplitudes times [cos(pi f), sin(pi f)]. The four predictions are blended as LIIF's, and the
result is a residual over the bilinear upsampling of the input.

The arithmetic follows the authors' code (jaewon-lee-b/lte, models/lte.py) step for step;
tests/fixtures/official_lte/FILES.md describes it and holds its outputs.

Two formulations of the decoding compute the same function, as for LIIF:
- `decode_reference`: the authors' `query_rgb`, step for step. Per query and corner it samples
  the amplitude map, the frequency map and the map of latent pixel centres (three lookups, each
  a strided read of every channel), then splits the interleaved (row, column) frequency pairs.
- the fast one (what `decode` runs): what depends on the latent pixel only is prepared once per
  latent pixel by `encode`, in one table laid out as rows (`backend.cat_channels_last`): the
  amplitudes, the row frequencies, the column frequencies (the pairs split once, not per query)
  and the pixel's centre. Per query and corner, one lookup reads the row. The values looked up
  and every operation after them are the reference's (equal to float rounding of the MLP's
  matrix products, in practice bit for bit); only the memory traffic differs
  (docs/benchmarks.md measures it). Unlike LIIF's, LTE's first layer cannot be precomputed: its
  input (amplitude times the Fourier basis) is not linear in anything per latent pixel.
"""
import math

import numpy as np

from liif.coords import make_coord_window
from liif.errors import ConfigError
from liif.models.decoder import Footprint, Latent, crop_map
from liif.models.registry import make, register


@register("lte")
class LTE:
    # the authors' test.py holds the cell at x4's (their training range) beyond x4: the default of
    # `test.cell_clip` for this family (liif/evaluation/protocol.py)
    published_cell_clip = 4

    def __init__(self, encoder_spec: dict, imnet_spec: dict | None = None, hidden_dim: int = 256):
        super().__init__()
        nn = self.backend.nn
        self.encoder = make(encoder_spec, self.backend)
        if self.encoder.out_scale != 1:  # the skip samples the input on the latent grid
            raise ConfigError(f"LTE needs an encoder that does not upsample: set no_upsampling: true in its "
                              f"encoder_spec ('{encoder_spec['name']}' upsamples x{self.encoder.out_scale})")
        if hidden_dim < 2 or hidden_dim % 2:  # D/2 frequency pairs, and D/2 phases for cos and sin each
            raise ConfigError(f"LTE's hidden_dim must be an even number >= 2, got {hidden_dim}")
        self.coef = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        # original: imnet_spec defaults to None but is required (the MLP is always built)
        self.imnet = make(imnet_spec, self.backend, args={"in_dim": hidden_dim})
        self.hidden_dim = hidden_dim

    # --- the decoder contract (liif/models/decoder.py) ------------------------------------------

    def encode(self, inp, crop=None, window=None, block=None):
        """The per-latent-pixel table of the fast decoding (see the module's docstring), and the
        input for the bilinear skip, on the kept part `crop` of the latent grid, which is the
        input's grid (the constructor checks the encoder). `block` is not used: nothing is built
        in blocks."""
        backend = self.backend
        feat = crop_map(self.encoder(inp), crop)
        coef, freq = self.coef(feat), self.freq(feat)
        del feat
        n, _, fh, fw = coef.shape
        centres = self._centres(window, n, fh, fw, like=coef)
        table = backend.cat_channels_last([coef, freq[:, 0::2], freq[:, 1::2], centres])
        return Latent({"table": table, "inp": crop_map(inp, crop)}, window)

    def decode(self, latent, coord, cell):
        """RGB (B, Q, 3) at `coord` for cells `cell` (B, Q, 2), in the whole map's coordinates."""
        backend = self.backend
        table, window = latent["table"], latent.window
        d = self.hidden_dim
        h, w = latent.whole_size
        hw, phase = self._query_terms(latent, coord, cell)
        bs, q = coord.shape[:2]
        preds, areas = [], []
        for shift in self._shifts(h, w, like=table):
            coord_ = (coord + shift).clamp(-1 + 1e-6, 1 - 1e-6)
            row = backend.grid_sample_nearest(table, coord_, window)  # (bs, q, 2D + 2): one row per query
            # split, not sliced: the gradient of four slices would be four zero-filled rows' worth each
            q_coef, q_freq_row, q_freq_col, q_coord = row.split([d, d // 2, d // 2, 2], -1)
            rel_coord = (coord - q_coord) * hw
            f = q_freq_row * rel_coord[:, :, 0:1] + q_freq_col * rel_coord[:, :, 1:2]
            f = (f + phase) * math.pi
            x = q_coef * backend.cat([f.cos(), f.sin()], -1)
            del row, q_coef, q_freq_row, q_freq_col, q_coord, f  # views of the row: it goes before the MLP
            preds.append(self.imnet(x.view(bs * q, -1)).view(bs, q, -1))
            areas.append((rel_coord[:, :, 0] * rel_coord[:, :, 1]).abs() + 1e-9)
        return self._blend(preds, areas) + backend.grid_sample_bilinear(latent["inp"], coord, window)

    def reach(self, max_cell):
        """2: the ensemble's neighbour, and one more because coef and freq (3x3 convolutions) are
        spoiled at a crop's cut edge; the bilinear skip reaches 1. The cell does not widen it."""
        return 2

    def footprint(self):
        c, d = self.encoder.out_dim, self.hidden_dim
        # measured with glibc's malloc in the tiled engine (docs/benchmarks.md, "LTE"), as LIIF's:
        # per latent pixel, the table (2D + 2) assembled while the two maps it is made from are alive,
        # the features and the convolutions' reordered copies: ~5D + C at encode's peak; per query,
        # at the MLP of one corner: ~11D (the row looked up, the frequencies, the basis, the MLP's
        # activations, the blocks the allocator keeps from the corners before it)
        return Footprint(latent_floats=5 * d + c, query_floats=11 * d + 64)

    def forward(self, inp, coord, cell):
        return self.decode(self.encode(inp), coord, cell)

    # --- the reference: the authors' query_rgb ---------------------------------------------------

    def texture(self, latent):
        """The amplitude map `coef` and the frequency map `freq` (B, D, h, w each) of a latent, in the
        authors' channel order (the frequency pairs interleaved)."""
        table, d = latent["table"], self.hidden_dim
        n, _, h, w = table.shape
        freq = self.backend.stack([table[:, d:d + d // 2], table[:, d + d // 2:2 * d]], 2).reshape(n, d, h, w)
        return table[:, :d], freq

    def decode_reference(self, latent, coord, cell):
        """The authors' query_rgb, step for step: three lookups per query and corner."""
        backend = self.backend
        coef, freq = self.texture(latent)
        window = latent.window
        n, _, fh, fw = coef.shape
        h, w = latent.whole_size
        centres = self._centres(window, n, fh, fw, like=coef)
        hw, phase = self._query_terms(latent, coord, cell)
        bs, q = coord.shape[:2]
        preds, areas = [], []
        for shift in self._shifts(h, w, like=coef):
            coord_ = (coord + shift).clamp(-1 + 1e-6, 1 - 1e-6)
            q_coef = backend.grid_sample_nearest(coef, coord_, window)
            q_freq = backend.grid_sample_nearest(freq, coord_, window)
            q_coord = backend.grid_sample_nearest(centres, coord_, window)
            # original: relative to the unshifted, unclamped query, in latent pixels
            rel_coord = (coord - q_coord) * hw
            # channels (2k, 2k+1) are the row and column frequency of pair k
            q_freq = q_freq.reshape(bs, q, -1, 2)
            f = q_freq[:, :, :, 0] * rel_coord[:, :, 0:1] + q_freq[:, :, :, 1] * rel_coord[:, :, 1:2]
            f = (f + phase) * math.pi
            x = (q_coef * backend.cat([f.cos(), f.sin()], -1)).contiguous()
            preds.append(self.imnet(x.view(bs * q, -1)).view(bs, q, -1))
            areas.append((rel_coord[:, :, 0] * rel_coord[:, :, 1]).abs() + 1e-9)
        return self._blend(preds, areas) + backend.grid_sample_bilinear(latent["inp"], coord, window)

    # --- shared by both ----------------------------------------------------------------------------

    def _centres(self, window, n, fh, fw, like):
        """The centres of the latent pixels (n, 2, fh, fw), as the original's make_coord computes
        them in float32, in the whole map's coordinates."""
        h, w, top, left = window if window is not None else (fh, fw, 0, 0)
        centres = make_coord_window((h, w), top, left, fh, fw).transpose(2, 0, 1)
        return self.backend.tensor(np.ascontiguousarray(np.broadcast_to(centres, (n, 2, fh, fw))), like=like)

    def _query_terms(self, latent, coord, cell):
        """(h, w) as a float32 tensor (multiplying by it is the original's per-column `*= h`, `*= w`,
        bit for bit), and the phase of each query's cell (B, Q, D/2)."""
        h, w = latent.whole_size
        like = next(iter(latent.maps.values()))
        hw = self.backend.tensor(np.array([h, w], np.float32), like=like)
        bs, q = coord.shape[:2]
        # original: recomputed for each of the four shifts; it depends on the cell only
        return hw, self.phase((cell * hw).view(bs * q, 2)).view(bs, q, -1)

    def _shifts(self, h, w, like):
        """The local ensemble's four shifts (half a latent pixel, rows and columns, plus 1e-6), as
        float32 tensors: the original adds the Python floats to float32 columns, the same sums."""
        rx, ry, eps_shift = 2 / h / 2, 2 / w / 2, 1e-6
        return [self.backend.tensor(np.array([vx * rx + eps_shift, vy * ry + eps_shift], np.float32), like=like)
                for vx in (-1, 1) for vy in (-1, 1)]

    def _blend(self, preds, areas):
        """LIIF's local ensemble: each corner's prediction weighted by the area of the diagonally
        opposite corner (original: the total is taken before the swap)."""
        tot_area = self.backend.stack(areas).sum(0)
        ret = 0
        for pred, area in zip(preds, areas[::-1]):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret
