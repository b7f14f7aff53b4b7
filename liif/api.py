"""The public Python API: `load_model`, `build_model` and the `Model` wrapper.

    model = liif.load_model("ckpt.pth", framework="torch", device="cpu")
    pred = model.query(inp, coord, cell, bsize=30000)   # the original batched_predict
    sr = model.upscale(image, size=(H, W))              # uint8 in, uint8 out

Everything crossing this API is NumPy; the framework stays inside.
"""
import numpy as np

from liif import backends, checkpoint, registry
from liif.coords import make_coord


class Model:
    """A built network plus its backend, device and spec (the original `{name, args}`)."""

    def __init__(self, net, backend, spec, device):
        self.net, self.backend, self.spec, self.device = net, backend, spec, device

    def query(self, inp, coord, cell, bsize=30000):
        """Predict at `coord` (B,Q,2) with cells `cell` (B,Q,2) from normalised `inp` (B,3,h,w).

        Returns (B,Q,3) float32 in the normalised space, like the original `batched_predict`:
        the encoder runs once, the decoder on chunks of `bsize` queries.
        """
        B = self.backend
        inp, coord, cell = (np.asarray(a, dtype=np.float32) for a in (inp, coord, cell))
        out = np.empty(coord.shape[:2] + (3,), dtype=np.float32)
        self.net.eval()
        with B.no_grad():
            feat = self.net.gen_feat(B.tensor(inp, like=self._anchor()))
            for start in range(0, coord.shape[1], bsize):
                stop = min(start + bsize, coord.shape[1])
                pred = self.net.query_rgb(B.tensor(coord[:, start:stop], like=feat), B.tensor(cell[:, start:stop], like=feat))
                out[:, start:stop] = B.to_numpy(pred)
        return out

    def upscale(self, image, size, bsize=30000):
        """Upscale a uint8 image (HxW grey, HxWx3 RGB or HxWx4 RGBA) to `size` = (H, W), uint8 RGB out.

        Coordinates are made per chunk, so memory is bounded by `bsize`, not by the output size.
        """
        image = to_rgb(np.asarray(image))
        height, width = parse_size(size)
        inp = ((image.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        rows, cols = (make_coord((height,))[:, 0], make_coord((width,))[:, 0])
        cell = np.empty((1, min(bsize, height * width), 2), dtype=np.float32)
        cell[..., 0], cell[..., 1] = 2 / height, 2 / width
        out = np.empty((height * width, 3), dtype=np.uint8)
        B = self.backend
        self.net.eval()
        with B.no_grad():
            feat = self.net.gen_feat(B.tensor(np.ascontiguousarray(inp), like=self._anchor()))
            for start in range(0, height * width, bsize):
                idx = np.arange(start, min(start + bsize, height * width))
                coord = np.stack([rows[idx // width], cols[idx % width]], -1)[None]
                pred = B.to_numpy(self.net.query_rgb(B.tensor(coord, like=feat), B.tensor(cell[:, :len(idx)], like=feat)))[0]
                # rounded, not floored (the original demo truncates)
                out[start:start + len(idx)] = np.round(np.clip(pred * 0.5 + 0.5, 0, 1) * 255)
        return out.reshape(height, width, 3)

    def _anchor(self):
        """Any tensor on the model's device, for `B.tensor(..., like=)`."""
        return next(iter(self.net.parameters()))


def build_model(spec, framework="torch", device="auto"):
    B = backends.get(framework)
    dev = B.device(device)
    net = B.to_device(registry.make(spec, B), dev)
    return Model(net, B, spec, dev)


def load_model(path, framework="torch", device="auto"):
    """Load a checkpoint written by the original code or by us onto `framework`."""
    B = backends.get(framework)
    ckpt = checkpoint.read(path, B)
    spec = {"name": ckpt["model"]["name"], "args": ckpt["model"]["args"]}
    model = build_model(spec, framework, device)
    try:
        B.load_state_dict_numpy(model.net, ckpt["model"]["sd"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    model.net = B.to_device(model.net, model.device)
    return model


def to_rgb(image):
    """uint8 (H,W), (H,W,1), (H,W,3) or (H,W,4) -> (H,W,3); alpha is dropped as Pillow's convert('RGB') does."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def parse_size(size):
    """(H, W) of positive integers, or a clear ValueError."""
    try:
        if isinstance(size, (str, bytes)):
            raise TypeError
        height, width = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be [height, width], got {size!r}") from None
    for v in (height, width):
        if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number)) or not float(v).is_integer() or v <= 0:
            raise ValueError(f"size must be two positive integers [height, width], got {list(size)!r}")
    return int(height), int(width)
