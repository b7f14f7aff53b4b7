"""Meta-SR's meta-upscale module (Hu et al. 2019) on a LIIF encoder, registered `metasr`.

As in the original LIIF code: per query, a small MLP maps (offset inside the latent
cell, 1/scale) to the weights of a 9C -> 3 linear map applied to the nearest unfolded
latent code. No ensemble, no area weighting.
"""
import math

import numpy as np

from liif.coords import make_coord_window
from liif.models.decoder import Footprint, Latent, crop_map
from liif.models.registry import make, register


@register("metasr")
class MetaSR:
    def __init__(self, encoder_spec: dict):
        super().__init__()
        self.encoder = make(encoder_spec, self.backend)
        # original: the decoder is hard-coded, not configurable
        imnet_spec = {"name": "mlp", "args": {"in_dim": 3, "out_dim": self.encoder.out_dim * 9 * 3, "hidden_list": [256]}}
        self.imnet = make(imnet_spec, self.backend)

    # --- the decoder contract (liif/models/decoder.py) ------------------------------------------

    def encode(self, inp, crop=None, window=None, block=None):
        """The encoder's features of `inp`, cut to `crop` at `window` (nothing is precomputed)."""
        feat = crop_map(self.encoder(inp), crop)
        return Latent({"feat": feat}, window)

    def decode(self, latent, coord, cell=None):
        backend = self.backend
        window = latent.window
        feat = backend.unfold3x3(latent["feat"])
        n, c, fh, fw = feat.shape
        h, w, top, left = window if window is not None else (fh, fw, 0, 0)  # the whole map's size
        feat_coord = make_coord_window((h, w), top, left, fh, fw)
        # the top-left corner of each latent cell (float32 steps, as the original's in-place ops)
        feat_coord[:, :, 0] -= np.float32((2 / h) / 2)
        feat_coord[:, :, 1] -= np.float32((2 / w) / 2)
        feat_coord = np.ascontiguousarray(np.broadcast_to(feat_coord.transpose(2, 0, 1), (n, 2, fh, fw)))
        feat_coord = backend.tensor(feat_coord, like=feat)

        coord_ = coord.clone()  # the top-left corner of the query pixel
        coord_[:, :, 0] -= cell[:, :, 0] / 2
        coord_[:, :, 1] -= cell[:, :, 1] / 2
        coord_q = (coord_ + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
        q_feat = backend.grid_sample_nearest(feat, coord_q, window)
        q_coord = backend.grid_sample_nearest(feat_coord, coord_q, window)

        rel_coord = coord_ - q_coord
        rel_coord[:, :, 0] *= h / 2
        rel_coord[:, :, 1] *= w / 2
        r_rev = cell[:, :, 0] * (h / 2)
        inp = backend.cat([rel_coord, r_rev.unsqueeze(-1)], -1)

        bs, q = coord.shape[:2]
        weight = self.imnet(inp.view(bs * q, -1)).view(bs * q, c, 3)
        pred = backend.bmm(q_feat.contiguous().view(bs * q, 1, -1), weight)
        return pred.view(bs, q, 3)

    def reach(self, max_cell):
        """A query reads the latent pixel under its cell's top-left corner, half a cell back, and
        the 3x3 unfolding its neighbours (zero padded at a crop's cut edges)."""
        return math.ceil(max_cell / 2) + 1

    def footprint(self):
        c = self.encoder.out_dim
        # the features are unfolded whole (9C a pixel) for every chunk of queries; per query: the
        # 9C x 3 weights the MLP makes, their input, the gathered code
        return Footprint(latent_floats=c + 9 * c, query_floats=4 * 9 * c + 2 * 256)

    def forward(self, inp, coord, cell):
        return self.decode(self.encode(inp), coord, cell)
