"""EDSR and EDSR-baseline encoders (Lim et al. 2017), as adapted by the original LIIF code.

Registered names `edsr-baseline` and `edsr`. With `no_upsampling` (how LIIF uses them)
the output is the feature map (`out_dim = n_feats`); otherwise a pixel-shuffle tail
upsamples by `scale` (2, 3 or a power of 2) to RGB, for the fixed-scale baselines.
"""
import math

from liif.errors import ConfigError
from liif.models.registry import register

RGB_MEAN = (0.4488, 0.4371, 0.4040)


class ResBlock:
    def __init__(self, n_feats, res_scale):
        super().__init__()
        nn = self.backend.nn
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x) * self.res_scale


class EDSR:
    def __init__(self, n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range):
        super().__init__()
        from liif.models.registry import bind
        backend = self.backend
        nn = backend.nn
        # The original builds MeanShift 1x1 convs but its forward never calls them (the
        # calls are commented out). They stay, frozen, so the state_dict keys match
        # original checkpoints in both directions.
        self.sub_mean = self._mean_shift(rgb_range, sign=-1)
        self.add_mean = self._mean_shift(rgb_range, sign=1)
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1))
        block = bind(ResBlock, backend)
        self.body = nn.Sequential(*[block(n_feats, res_scale) for _ in range(n_resblocks)],
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.no_upsampling = no_upsampling
        # the receptive field's radius in input pixels (tiled inference, liif/inference/tiled.py): each 3x3 conv
        # on the path widens it by one pixel: the head, 2 per residual block, the body's last conv
        self.halo = 1 + 2 * n_resblocks + 1
        # floats per input pixel the forward's peak holds, an estimate (tiled inference sizes its tiles by
        # it): in a residual block, the head's output (the global skip), the block's input, the convs' and
        # the ReLU's outputs, the scaled branch and the sum, ~5 maps alive, and the freed ones that the
        # allocator keeps for reuse. Measured with PyTorch on the CPU, glibc's malloc (docs/tiling.md):
        # 7.9 x n_feats for EDSR-baseline, 7.7 x for EDSR
        self.activation_floats = 8 * n_feats
        if no_upsampling:
            self.out_dim = n_feats
            self.out_scale = 1  # output pixels per input pixel, along each axis
        else:
            self.out_dim = 3
            self.out_scale = scale
            self.tail = nn.Sequential(*self._upsampler(scale, n_feats), nn.Conv2d(n_feats, 3, 3, padding=1))
            # the tail's convs: the first at the input's resolution, the others at 2x, 4x ... of it,
            # where one output pixel is less than one input pixel: counted as one each (an upper bound)
            self.halo += (int(math.log2(scale)) if scale & (scale - 1) == 0 else 1) + 1
            # the tail's last upsampling conv and pixel shuffle hold scale**2 times the features, twice
            self.activation_floats = max(self.activation_floats, 3 * scale * scale * n_feats)

    def _mean_shift(self, rgb_range, sign):
        import numpy as np
        conv = self.backend.frozen(self.backend.nn.Conv2d(3, 3, 1))
        self.backend.set_parameter(conv.weight, np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1))
        self.backend.set_parameter(conv.bias, sign * rgb_range * np.array(RGB_MEAN, dtype=np.float32))
        return conv

    def _upsampler(self, scale, n_feats):
        nn = self.backend.nn
        if scale & (scale - 1) == 0:
            layers = []
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
            return [nn.Sequential(*layers)]
        if scale == 3:
            return [nn.Sequential(nn.Conv2d(n_feats, 9 * n_feats, 3, padding=1), nn.PixelShuffle(3))]
        raise ConfigError(f"EDSR upsampling supports scale 3 or a power of 2, not {scale}")

    def forward(self, x):
        x = self.head(x)
        res = self.body(x) + x
        return res if self.no_upsampling else self.tail(res)


@register("edsr-baseline")
class EDSRBaseline(EDSR):
    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1, scale: int = 2,
                 no_upsampling: bool = False, rgb_range: float = 1):
        super().__init__(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)


@register("edsr")
class EDSRFull(EDSR):
    def __init__(self, n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1, scale: int = 2,
                 no_upsampling: bool = False, rgb_range: float = 1):
        super().__init__(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)
