"""LIIF: the Local Implicit Image Function decoder (Chen et al., CVPR 2021), registered `liif`.

An encoder turns the input into a latent feature map (`encode`); `decode` predicts the RGB at
any continuous coordinate from the nearest latent code(s), the relative coordinate and the
query's cell size (the original's `query_rgb`). Flags are the paper's ablations: `feat_unfold`
(-u), `local_ensemble` (-e), `cell_decode` (-c); `imnet_spec.args.hidden_list` is -d. Without
`imnet_spec` the model is the fixed-scale baseline: the encoder upsamples and queries sample it
nearest. The members `encode`, `decode`, `reach`, `footprint` are the decoder contract
(liif/models/decoder.py) that training, tiling and the viewer use.

The arithmetic follows the original code step for step (its quirks included, marked
"original:") so that original checkpoints give the same outputs to float precision.

Two formulations of the decoding compute the same function:
- `decode_reference`: the original's `query_rgb`, step for step. Per query and ensemble corner
  it gathers the (unfolded) latent code and runs the whole MLP on [q_feat, rel_coord, rel_cell].
- the fast one (what `decode` runs, in inference and training): the first Linear is split,
  W = [W_f | W_c | W_s]. W_f.q_feat only depends on the latent cell a query picks, so
  W_f.code + b is computed once per latent position for the whole map (the latent table,
  (B, 256, h, w): W_f applied to unfold3x3(feat), i.e. a 3x3 conv) and gathered with the same
  nearest sampling as the reference (same cell choice, ties included); per query and corner
  only W_c.rel_coord + W_s.rel_cell is added before the MLP's remaining layers. Equal to the
  reference up to float rounding (~1e-7 on the original checkpoints). `encode` builds the
  table (a map of the `Latent`, beside the features), so query chunks share it.
"""
import numpy as np

from liif.coords import make_coord_window
from liif.models.decoder import Footprint, Latent, crop_map
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

    # --- the decoder contract (liif/models/decoder.py) ------------------------------------------

    def encode(self, inp, crop=None, window=None, block=None):
        """The encoder's features of `inp`, cut to `crop` at `window`, and, on the fast path, the
        latent table built from them in blocks of `block` latent pixels (default: TABLE_BLOCK floats
        of unfolded code)."""
        feat = crop_map(self.encoder(inp), crop)
        maps = {"feat": feat}
        if self.imnet is not None and self._fast_decodable():
            maps["table"] = self._latent_table(feat, block)
        return Latent(maps, window)

    def decode(self, latent, coord, cell=None):
        """RGB at `coord` (B,Q,2) for cells `cell` (B,Q,2): through the latent table when `encode`
        built one (the fast formulation), else the reference."""
        if "table" in latent.maps:
            return self._decode_fast(latent, coord, cell)
        return self.decode_reference(latent, coord, cell)

    def reach(self, max_cell):
        """The ensemble's shifted lookups reach one latent pixel to each side; the 3x3 unfolding
        (and the latent table built from it) one more, spoiled at a crop's cut edges."""
        ensemble = 1 if self.local_ensemble else 0
        unfold = 1 if self.feat_unfold and self.imnet is not None else 0
        return ensemble + unfold

    def footprint(self):
        c = self.encoder.out_dim
        if self.imnet is None:
            return Footprint(latent_floats=c, query_floats=16)  # a nearest lookup of the upsampled image
        k = 9 * c if self.feat_unfold else c
        if not self._fast_decodable():
            return Footprint(latent_floats=c + k, query_floats=2 * (k + 4) + 3 * 256)  # the MLP's whole input
        width = self.imnet.layers[0].weight.shape[0]
        # the table build: a block of unfolded code, its product with the first layer, that product's
        # biased copy; per query, measured with glibc's malloc (docs/tiling.md): ~10.5 x the width at
        # the chunk's peak (a corner's gathered rows, their sum with the coordinate terms, the layers'
        # outputs, and the blocks the allocator keeps from the corners before it)
        return Footprint(latent_floats=c + width, build_floats=max(k + width, 2 * width),
                         build_block=max(1, self.TABLE_BLOCK // k), query_floats=11 * width + 32)

    def forward(self, inp, coord, cell):
        return self.decode(self.encode(inp), coord, cell)

    # --- lookups ---------------------------------------------------------------------------------

    def _grid(self, feat, window, like):
        """(H, W) of the map `feat` is part of, and the centres of `feat`'s cells in its
        coordinates as a (n, 2, h, w) tensor, for nearest lookups and relative coordinates."""
        n, _, h, w = feat.shape
        height, width, top, left = window if window is not None else (h, w, 0, 0)
        centres = make_coord_window((height, width), top, left, h, w).transpose(2, 0, 1)
        centres = self.backend.tensor(np.ascontiguousarray(np.broadcast_to(centres, (n, 2, h, w))), like=like)
        return height, width, centres

    def decode_reference(self, latent, coord, cell=None):
        """The original query_rgb, step for step (the decoder MLP sees the full input)."""
        backend = self.backend
        feat, window = latent["feat"], latent.window
        if self.imnet is None:
            return backend.grid_sample_nearest(feat, coord, window)
        h, w, feat_coord = self._grid(feat, window, like=feat)
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
        module: to watch the decoder's full input (a forward hook), use `decode_reference`."""
        layers = getattr(self.imnet, "layers", None)
        return layers is not None and len(layers) > 0 and isinstance(layers[0], self.backend.nn.Linear)

    def _latent_table(self, feat, block=None):
        """W_f.code + b at every latent position, (B, D, h, w): the feature part of the decoder's first
        Linear (D = its width) and its bias, applied to the (unfolded) latent code, i.e. a 3x3 conv
        (1x1 without feat_unfold), built `block` latent pixels (whole rows) at a time."""
        backend = self.backend
        first = self.imnet.layers[0]
        n, c, h, w = feat.shape
        k = c * 9 if self.feat_unfold else c
        w_f = first.weight[:, :k]  # (D, k)
        block = block or self.TABLE_BLOCK // k
        rows = max(1, min(h, block // max(1, n * w)))
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
            part = (w_f @ code.reshape(n, k, (r1 - r0) * w)).view(n, -1, r1 - r0, w)
            del code  # the unfolded block (9x the features) goes before the next is made
            if bias is not None:
                part = part + bias
            if rows >= h:
                proj = part
            else:  # written in place into one table: no list of blocks and its concatenated copy
                if proj is None:
                    proj = backend.tensor(np.empty((n, part.shape[1], h, w), np.float32), like=part)
                proj[:, :, r0:r1] = part
                proj = backend.materialize(proj)
            del part
        return proj

    def _decode_fast(self, latent, coord, cell=None):
        """The decoding through the latent table: per query and corner, a nearest lookup of D values,
        W_c.rel_coord + W_s.rel_cell added, then the MLP's remaining layers."""
        backend = self.backend
        proj, window = latent["table"], latent.window
        d = proj.shape[1]
        first = self.imnet.layers[0]
        k = first.weight.shape[1] - (4 if self.cell_decode else 2)
        w_rel = first.weight[:, k:].permute(1, 0)  # (2 or 4, D): rel_coord (and rel_cell) -> D
        rest = [self.imnet.layers[i] for i in range(1, len(self.imnet.layers))]
        # the centre of every latent cell, as the reference samples it (never needs a gradient)
        h, w, feat_coord = self._grid(proj, window, like=proj)
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

