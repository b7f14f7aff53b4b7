"""LIIF: the Local Implicit Image Function decoder (Chen et al., CVPR 2021), registered `liif`.

An encoder turns the input into a latent feature map; `query_rgb` predicts the RGB at any
continuous coordinate from the nearest latent code(s), the relative coordinate and the
query's cell size. Flags are the paper's ablations: `feat_unfold` (-u), `local_ensemble`
(-e), `cell_decode` (-c); `imnet_spec.args.hidden_list` is -d. Without `imnet_spec` the
model is the fixed-scale baseline: the encoder upsamples and queries sample it nearest.

The arithmetic follows the original code step for step (its quirks included, marked
"original:") so that original checkpoints give the same outputs to float precision.
"""
import numpy as np

from liif.coords import make_coord
from liif.registry import make, register


@register("liif")
class LIIF:
    def __init__(self, encoder_spec: dict, imnet_spec: dict | None = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = make(encoder_spec, self.B)
        if imnet_spec is not None:
            in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
            self.imnet = make(imnet_spec, self.B, args={"in_dim": in_dim})
        else:
            self.imnet = None

    def gen_feat(self, inp):
        self._feat = self.encoder(inp)  # leading underscore: jittor would make a Var attribute a parameter
        return self._feat

    def query_rgb(self, coord, cell=None):
        B = self.B
        feat = self._feat
        if self.imnet is None:
            return B.grid_sample_nearest(feat, coord)
        if self.feat_unfold:
            feat = B.unfold3x3(feat)

        if self.local_ensemble:
            shifts, eps_shift = [-1, 1], 1e-6
        else:
            shifts, eps_shift = [0], 0
        n, _, h, w = feat.shape
        rx, ry = 2 / h / 2, 2 / w / 2  # half a latent cell, rows and columns
        feat_coord = np.ascontiguousarray(np.broadcast_to(make_coord((h, w), flatten=False).transpose(2, 0, 1), (n, 2, h, w)))
        feat_coord = B.tensor(feat_coord, like=feat)

        preds, areas = [], []
        for vx in shifts:
            for vy in shifts:
                coord_ = coord.clone()
                coord_[:, :, 0] += vx * rx + eps_shift
                coord_[:, :, 1] += vy * ry + eps_shift
                coord_ = coord_.clamp(-1 + 1e-6, 1 - 1e-6)
                q_feat = B.grid_sample_nearest(feat, coord_)
                q_coord = B.grid_sample_nearest(feat_coord, coord_)
                # original: relative to the unshifted, unclamped query, in units of half a cell
                rel_coord = coord - q_coord
                rel_coord[:, :, 0] *= h
                rel_coord[:, :, 1] *= w
                inp = B.cat([q_feat, rel_coord], -1)
                if self.cell_decode:
                    rel_cell = cell.clone()
                    rel_cell[:, :, 0] *= h
                    rel_cell[:, :, 1] *= w
                    inp = B.cat([inp, rel_cell], -1)
                bs, q = coord.shape[:2]
                preds.append(self.imnet(inp.view(bs * q, -1)).view(bs, q, -1))
                areas.append((rel_coord[:, :, 0] * rel_coord[:, :, 1]).abs() + 1e-9)

        tot_area = B.stack(areas).sum(0)
        if self.local_ensemble:
            # each corner's prediction is weighted by the area of the diagonally opposite one
            areas = areas[::-1]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def forward(self, inp, coord, cell):
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)
