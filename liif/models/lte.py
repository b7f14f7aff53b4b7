"""LTE: the Local Texture Estimator (Lee & Jin, CVPR 2022), registered `lte`.

On LIIF's encoder, two 3x3 convolutions estimate per latent pixel an amplitude map (`coef`) and
a frequency map (`freq`), D channels each (D = `hidden_dim`); `phase` maps the query's cell to
D/2 phases. A query reads, at each of the four nearest latent pixels (LIIF's local ensemble),
the D/2 frequencies projected on its offset from that pixel, plus the phase: the MLP gets the
amplitudes times [cos(pi f), sin(pi f)]. The four predictions are blended as LIIF's, and the
result is a residual over the bilinear upsampling of the input.

The arithmetic follows the authors' code (jaewon-lee-b/lte, models/lte.py) step for step;
tests/fixtures/official_lte/FILES.md describes it and holds its outputs.
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

    def encode(self, inp, crop=None, window=None, block=None):
        """The amplitude and frequency maps, and the input for the bilinear skip, on the kept part
        `crop` of the latent grid, which is the input's grid (the constructor checks the encoder).
        `block` is not used: nothing is built in blocks."""
        feat = crop_map(self.encoder(inp), crop)
        inp = crop_map(inp, crop)
        return Latent({"coef": self.coef(feat), "freq": self.freq(feat), "inp": inp}, window)

    def decode(self, latent, coord, cell):
        """RGB (B, Q, 3) at `coord` for cells `cell` (B, Q, 2), in the whole map's coordinates."""
        backend = self.backend
        coef, freq, window = latent["coef"], latent["freq"], latent.window
        n, _, fh, fw = coef.shape
        h, w = latent.whole_size
        top, left = (window[2], window[3]) if window is not None else (0, 0)
        # the centres of the latent pixels, as the original's make_coord computes them in float32
        centres = make_coord_window((h, w), top, left, fh, fw).transpose(2, 0, 1)
        centres = backend.tensor(np.ascontiguousarray(np.broadcast_to(centres, (n, 2, fh, fw))), like=coef)
        # float32 (h, w): multiplying by it is the original's per-column `*= h`, `*= w`, bit for bit
        hw = backend.tensor(np.array([h, w], np.float32), like=coef)
        bs, q = coord.shape[:2]
        # original: recomputed for each of the four shifts; it depends on the cell only
        phase = self.phase((cell * hw).view(bs * q, 2)).view(bs, q, -1)

        rx, ry, eps_shift = 2 / h / 2, 2 / w / 2, 1e-6  # half a latent pixel, rows and columns
        preds, areas = [], []
        for vx in (-1, 1):
            for vy in (-1, 1):
                # the original adds the Python float to float32 columns: the same float32 sums
                shift = backend.tensor(np.array([vx * rx + eps_shift, vy * ry + eps_shift], np.float32), like=coef)
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

    def _blend(self, preds, areas):
        """LIIF's local ensemble: each corner's prediction weighted by the area of the diagonally
        opposite corner (original: the total is taken before the swap)."""
        tot_area = self.backend.stack(areas).sum(0)
        ret = 0
        for pred, area in zip(preds, areas[::-1]):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def reach(self, max_cell):
        """2: the ensemble's neighbour, and one more because coef and freq (3x3 convolutions) are
        spoiled at a crop's cut edge; the bilinear skip reaches 1. The cell does not widen it."""
        return 2

    def footprint(self):
        c, d = self.encoder.out_dim, self.hidden_dim
        # per latent pixel: the features while coef and freq are made, then the two maps and the input;
        # per query, at the MLP of one corner: lookups (3D), frequencies and basis (~3D), the MLP's
        # activations (~3D), the four predictions and the areas
        return Footprint(latent_floats=c + 2 * d + 3, query_floats=10 * d + 64)

    def forward(self, inp, coord, cell):
        return self.decode(self.encode(inp), coord, cell)
