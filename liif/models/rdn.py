"""RDN encoder (Zhang et al. 2018, Residual Dense Network), as in the original LIIF code.

Registered name `rdn`. Config A = (D=20, C=6, G=32), B = (D=16, C=8, G=64).
With `no_upsampling` it returns the G0-channel feature map.
"""
from liif.errors import ConfigError
from liif.models.registry import bind, register


class RDBConv:
    def __init__(self, in_channels, grow_rate, k_size):
        super().__init__()
        nn = self.backend.nn
        self.conv = nn.Sequential(nn.Conv2d(in_channels, grow_rate, k_size, padding=(k_size - 1) // 2), nn.ReLU())

    def forward(self, x):
        return self.backend.cat([x, self.conv(x)], 1)


class RDB:
    def __init__(self, g0, grow_rate, n_layers, k_size):
        super().__init__()
        nn = self.backend.nn
        conv = bind(RDBConv, self.backend)
        self.convs = nn.Sequential(*[conv(g0 + c * grow_rate, grow_rate, k_size) for c in range(n_layers)])
        self.LFF = nn.Conv2d(g0 + n_layers * grow_rate, g0, 1)  # local feature fusion

    def forward(self, x):
        return self.LFF(self.convs(x)) + x


# (D blocks, C layers per block, G growth rate); "T" is not the paper's: a tiny RDN for smoke tests
CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64), "T": (2, 2, 8)}


@register("rdn")
class RDN:
    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = "B", scale: int = 2,
                 no_upsampling: bool = False):
        super().__init__()
        nn = self.backend.nn
        D, C, G = CONFIGS[RDNconfig]
        pad = (RDNkSize - 1) // 2
        self.SFENet1 = nn.Conv2d(3, G0, RDNkSize, padding=pad)
        self.SFENet2 = nn.Conv2d(G0, G0, RDNkSize, padding=pad)
        rdb = bind(RDB, self.backend)
        self.RDBs = nn.ModuleList([rdb(G0, G, C, RDNkSize) for _ in range(D)])
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), nn.Conv2d(G0, G0, RDNkSize, padding=pad))  # global fusion
        self.no_upsampling = no_upsampling
        # the receptive field's radius in input pixels (tiled inference, liif/inference/tiled.py): each k x k conv
        # on the path widens it by (k - 1) / 2: SFENet1, SFENet2, the C convs of each of the D blocks
        # (the dense links skip some, the longest path goes through all), GFF's k x k (1x1s add nothing)
        self.halo = pad * (2 + D * C + 1)
        # floats per input pixel the forward's peak holds, an estimate (tiled inference sizes its tiles by
        # it): at the global fusion, every block's output (D x G0), their concatenation (D x G0), the copy
        # the CPU convolution makes of it in its own layout (D x G0), and what the allocator keeps of the
        # blocks' freed dense concatenations. Measured with PyTorch on the CPU, glibc's malloc
        # (docs/tiling.md): 3898 for config B, this gives 4096
        self.activation_floats = 4 * D * G0
        if no_upsampling:
            self.out_dim = G0
            self.out_scale = 1  # output pixels per input pixel, along each axis
            return
        self.out_dim = 3
        self.out_scale = scale
        # UPNet's convs, the first at the input's resolution, the others finer: one each (an upper bound)
        self.halo += pad * (2 if scale in (2, 3) else 3)
        self.activation_floats = max(self.activation_floats, 3 * scale * scale * G)
        if scale in (2, 3):
            self.UPNet = nn.Sequential(nn.Conv2d(G0, G * scale * scale, RDNkSize, padding=pad), nn.PixelShuffle(scale),
                                       nn.Conv2d(G, 3, RDNkSize, padding=pad))
        elif scale == 4:
            self.UPNet = nn.Sequential(nn.Conv2d(G0, G * 4, RDNkSize, padding=pad), nn.PixelShuffle(2),
                                       nn.Conv2d(G, G * 4, RDNkSize, padding=pad), nn.PixelShuffle(2),
                                       nn.Conv2d(G, 3, RDNkSize, padding=pad))
        else:
            raise ConfigError(f"RDN upsampling supports scale 2, 3 or 4, not {scale}")

    def forward(self, x):
        f_1 = self.SFENet1(x)
        x = self.SFENet2(f_1)
        outs = []
        for rdb in self.RDBs:
            x = rdb(x)
            outs.append(x)
        x = self.GFF(self.backend.cat(outs, 1)) + f_1
        return x if self.no_upsampling else self.UPNet(x)
