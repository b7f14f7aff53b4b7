"""LIIF: the Local Implicit Image Function decoder (Chen et al., CVPR 2021), registered `liif`.

An encoder turns the input into a latent feature map; `query_rgb` predicts the RGB at any
continuous coordinate from the nearest latent code(s), the relative coordinate and the
query's cell size. Flags are the paper's ablations: `feat_unfold` (-u), `local_ensemble`
(-e), `cell_decode` (-c); `imnet_spec.args.hidden_list` is -d. Without `imnet_spec` the
model is the fixed-scale baseline: the encoder upsamples and queries sample it nearest.

The arithmetic follows the original code step for step (its quirks included, marked
"original:") so that original checkpoints give the same outputs to float precision.

Two formulations of `query_rgb` compute the same function:
- `query_rgb_reference`: the original's, step for step. Per query and ensemble corner it
  gathers the (unfolded) latent code and runs the whole MLP on [q_feat, rel_coord, rel_cell].
- `query_rgb` (the default, inference and training): the first Linear is split,
  W = [W_f | W_c | W_s]. W_f.q_feat only depends on the latent cell a query picks, so
  W_f.code + b is computed once per latent position for the whole map (the latent table,
  (B, 256, h, w): W_f applied to unfold3x3(feat), i.e. a 3x3 conv) and gathered with the same
  nearest sampling as the reference (same cell choice, ties included); per query and corner
  only W_c.rel_coord + W_s.rel_cell is added before the MLP's remaining layers. Equal to the
  reference up to float rounding (~1e-7 on the original checkpoints). The table is cached
  per feature map in eval mode (query chunks reuse it); `gen_feat` drops it.
"""
import numpy as np

from liif.coords import make_coord_window
from liif.models.registry import make, register


@register("liif")
class LIIF:
    def __init__(self, encoder_spec: dict, imnet_spec: dict | None = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = make(encoder_spec, self.backend)
        if imnet_spec is not None:
            in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
            self.imnet = make(imnet_spec, self.backend, args={"in_dim": in_dim})
        else:
            self.imnet = None
        self._table = None  # the fast path's per-feature-map cache, see `_latent_table`
        self._table_block = None  # floats per block of the table's build (`use_feat`), None: TABLE_BLOCK

    def gen_feat(self, inp):
        return self.use_feat(self.encoder(inp))

    def use_feat(self, feat, window=None, table_block=None):
        """Decode from `feat` from now on. `window` = (H, W, top, left): `feat` is the part at (top, left)
        of an H x W feature map (a tile's, liif/inference/tiled.py); queries keep the whole map's coordinates,
        so every nearest lookup, relative coordinate and cell size is the whole map's. `table_block`:
        unfolded floats per block of the latent table's build (default TABLE_BLOCK; a memory budget)."""
        self._table = None
        self._feat = feat  # leading underscore: jittor would make a Var attribute a parameter
        self._window = window
        self._table_block = table_block
        return feat

    def _grid(self, feat, like):
        """(H, W, window) of the map `feat` is part of, and the centres of `feat`'s cells in its
        coordinates as a (n, 2, h, w) tensor, for nearest lookups and relative coordinates."""
        n, _, h, w = feat.shape
        window = getattr(self, "_window", None)
        height, width, top, left = window if window is not None else (h, w, 0, 0)
        centres = make_coord_window((height, width), top, left, h, w).transpose(2, 0, 1)
        centres = self.backend.tensor(np.ascontiguousarray(np.broadcast_to(centres, (n, 2, h, w))), like=like)
        return height, width, window, centres

    def query_rgb(self, coord, cell=None):
        """RGB at `coord` (B,Q,2) for cells `cell` (B,Q,2), from the map of the last `gen_feat`:
        the fast formulation, or the reference where it does not apply (see `_fast_decodable`)."""
        if self.imnet is None or not self._fast_decodable():
            return self.query_rgb_reference(coord, cell)
        return self._query_rgb_fast(coord, cell)

    def query_rgb_reference(self, coord, cell=None):
        """The original query_rgb, step for step (the decoder MLP sees the full input)."""
        backend = self.backend
        feat = self._feat
        if self.imnet is None:
            return backend.grid_sample_nearest(feat, coord, getattr(self, "_window", None))
        h, w, window, feat_coord = self._grid(feat, like=feat)
        if self.feat_unfold:
            feat = backend.unfold3x3(feat)

        if self.local_ensemble:
            shifts, eps_shift = [-1, 1], 1e-6
        else:
            shifts, eps_shift = [0], 0
        rx, ry = 2 / h / 2, 2 / w / 2  # half a latent cell, rows and columns

        preds, areas = [], []
        for vx in shifts:
            for vy in shifts:
                coord_ = coord.clone()
                coord_[:, :, 0] += vx * rx + eps_shift
                coord_[:, :, 1] += vy * ry + eps_shift
                coord_ = coord_.clamp(-1 + 1e-6, 1 - 1e-6)
                q_feat = backend.grid_sample_nearest(feat, coord_, window)
                q_coord = backend.grid_sample_nearest(feat_coord, coord_, window)
                # original: relative to the unshifted, unclamped query, in units of half a cell
                rel_coord = coord - q_coord
                rel_coord[:, :, 0] *= h
                rel_coord[:, :, 1] *= w
                inp = backend.cat([q_feat, rel_coord], -1)
                if self.cell_decode:
                    rel_cell = cell.clone()
                    rel_cell[:, :, 0] *= h
                    rel_cell[:, :, 1] *= w
                    inp = backend.cat([inp, rel_cell], -1)
                bs, q = coord.shape[:2]
                preds.append(self.imnet(inp.view(bs * q, -1)).view(bs, q, -1))
                areas.append((rel_coord[:, :, 0] * rel_coord[:, :, 1]).abs() + 1e-9)

        return self._blend(preds, areas)

    def _blend(self, preds, areas):
        """The local ensemble: each corner's prediction weighted by the area of the diagonally
        opposite corner (original: the total is taken before the swap)."""
        tot_area = self.backend.stack(areas).sum(0)
        if self.local_ensemble:
            areas = areas[::-1]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    # --- the fast path -----------------------------------------------------------------------

    # unfolded features per block when building the latent table (floats): bounds its transient
    # memory for a large input; smaller maps (a training batch, a 64x64 image) are one block
    TABLE_BLOCK = 1 << 25

    def _fast_decodable(self):
        """The fast path needs an MLP whose first layer is a Linear. It never calls the MLP as a
        module: to watch the decoder's full input (a forward hook), use `query_rgb_reference`."""
        layers = getattr(self.imnet, "layers", None)
        return layers is not None and len(layers) > 0 and isinstance(layers[0], self.backend.nn.Linear)

    def _latent_table(self):
        """W_f.code + b at every latent position, (B, D, h, w): the feature part of the decoder's first
        Linear (D = its width) and its bias, applied to the (unfolded) latent code, i.e. a 3x3 conv
        (1x1 without feat_unfold). Cached per feature map, except in training mode (gradients flow
        through it, and `forward` calls gen_feat every time anyway)."""
        cached = self._table
        if cached is not None and cached[0] is self._feat:
            return cached[1]
        backend = self.backend
        feat = self._feat
        first = self.imnet.layers[0]
        n, c, h, w = feat.shape
        k = c * 9 if self.feat_unfold else c
        w_f = first.weight[:, :k]  # (D, k)
        rows = max(1, min(h, (self._table_block or self.TABLE_BLOCK) // max(1, n * k * w)))
        bias = None if first.bias is None else first.bias.view(-1, 1, 1)
        proj = None
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            if self.feat_unfold:
                # rows r0..r1 of the unfolded map need a row of halo on each side; the zero padding
                # that unfold3x3 adds at a cut is dropped with the halo rows
                lo, hi = max(0, r0 - 1), min(h, r1 + 1)
                code = backend.unfold3x3(feat if (lo, hi) == (0, h) else feat[:, :, lo:hi])
                if (lo, hi) != (r0, r1):
                    code = code[:, :, r0 - lo:r1 - lo]
            else:
                code = feat if (r0, r1) == (0, h) else feat[:, :, r0:r1]
            # reshape, not view: without feat_unfold `code` is the encoder's map, which may be NHWC (channels_last)
            block = (w_f @ code.reshape(n, k, (r1 - r0) * w)).view(n, -1, r1 - r0, w)
            del code  # the unfolded block (9x the features) goes before the next is made
            if bias is not None:
                block = block + bias
            if rows >= h:
                proj = block
            else:  # written in place into one table: no list of blocks and its concatenated copy
                if proj is None:
                    proj = backend.tensor(np.empty((n, block.shape[1], h, w), np.float32), like=block)
                proj[:, :, r0:r1] = block
                proj = backend.materialize(proj)
            del block
        self._table = None if self.training else (feat, proj)
        return proj

    def _query_rgb_fast(self, coord, cell=None):
        """query_rgb through the latent table: per query and corner, a nearest lookup of D values,
        W_c.rel_coord + W_s.rel_cell added, then the MLP's remaining layers."""
        backend = self.backend
        proj = self._latent_table()
        d = proj.shape[1]
        first = self.imnet.layers[0]
        k = first.weight.shape[1] - (4 if self.cell_decode else 2)
        w_rel = first.weight[:, k:].permute(1, 0)  # (2 or 4, D): rel_coord (and rel_cell) -> D
        rest = [self.imnet.layers[i] for i in range(1, len(self.imnet.layers))]
        # the centre of every latent cell, as the reference samples it (never needs a gradient)
        h, w, window, feat_coord = self._grid(proj, like=proj)
        # float32 (h, w): multiplying by it is the reference's per-column `*= h`, `*= w`, bit for bit
        hw = backend.tensor(np.array([h, w], np.float32), like=proj)
        rel_cell = cell * hw if self.cell_decode else None

        if self.local_ensemble:
            shifts, eps_shift = [-1, 1], 1e-6
        else:
            shifts, eps_shift = [0], 0
        rx, ry = 2 / h / 2, 2 / w / 2
        bs, q = coord.shape[:2]
        preds, areas = [], []
        for vx in shifts:
            for vy in shifts:
                if self.local_ensemble:
                    # the reference adds the Python float to float32 columns: the same float32 sums
                    shift = backend.tensor(np.array([vx * rx + eps_shift, vy * ry + eps_shift], np.float32), like=proj)
                    coord_ = coord + shift
                else:
                    coord_ = coord
                coord_ = coord_.clamp(-1 + 1e-6, 1 - 1e-6)
                q_proj = backend.grid_sample_nearest(proj, coord_, window)  # (bs, q, D): the chosen cells' W_f.code + b
                q_coord = backend.grid_sample_nearest(feat_coord, coord_, window)
                # original: relative to the unshifted, unclamped query, in units of half a cell
                rel_coord = (coord - q_coord) * hw
                rel = backend.cat([rel_coord, rel_cell], -1) if self.cell_decode else rel_coord
                x = rel @ w_rel
                x += q_proj  # the first Linear's output, in the matmul's (contiguous) buffer
                del q_proj  # one (Q, D) block fewer alive during the MLP
                x = x.view(bs * q, d)
                for layer in rest:
                    x = layer(x)
                preds.append(x.view(bs, q, -1))
                areas.append((rel_coord[:, :, 0] * rel_coord[:, :, 1]).abs() + 1e-9)

        return self._blend(preds, areas)

    def forward(self, inp, coord, cell):
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)

