"""Shared by the viewer's tests: a tiny LIIF checkpoint, a viewer over it, and reading renders."""
import base64
import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

TINY = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}}}


TINY_LTE = {"name": "lte", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}, "hidden_dim": 16}}


def tiny_checkpoint(path, seed=0, epoch=7, framework="torch", spec=TINY):
    """A checkpoint of `spec` (default: a tiny LIIF) with random weights (our envelope), written where a
    run would keep it."""
    import torch

    from liif.models import checkpoint
    from liif.inference.api import build_model
    from liif.backends import torch as backend

    torch.manual_seed(seed)
    model = build_model(spec, framework="torch", device="cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write(checkpoint.envelope(spec, backend.state_dict_numpy(model.net), epoch=epoch,
                                         extra={"framework": framework}), str(path))
    return str(path)


def photo(h, w, seed=0):
    """A smooth random RGB image (uint8 HxWx3): bicubic-upsampled noise, so panes differ visibly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def png_bytes(image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width, height):
    """The start of a PNG: its signature, the IHDR of `width` x `height` RGB pixels, a few bytes of IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def messages(text):
    return [json.loads(line) for line in text.splitlines() if line]


def assemble(msgs, height, width, top, left):
    """The full-resolution tiles of a render pasted into a viewport (coarse previews left out);
    returns (pixels, mask of the pixels covered)."""
    out = np.zeros((height, width, 3), np.uint8)
    covered = np.zeros((height, width), bool)
    for m in msgs:
        if m["type"] != "tile" or m["coarse"]:
            continue
        tile = np.asarray(Image.open(io.BytesIO(base64.b64decode(m["png"]))).convert("RGB"))
        assert tile.shape == (m["height"], m["width"], 3)
        r, c = m["top"] - top, m["left"] - left
        out[r:r + m["height"], c:c + m["width"]] = tile
        covered[r:r + m["height"], c:c + m["width"]] = True
    return out, covered


def expected_view(model, image, scale, top, left, height, width):
    """What a viewport must show, computed here from first principles: the pixel centres of the full
    upscale grid (round(h*s), round(w*s)) inside the viewport, cells of one output pixel, through
    Model.query, rounded as Model.upscale rounds. Returns (pixels, mask of the image's pixels)."""
    from liif.coords import make_coord

    top, left = int(top), int(left)
    H, W = (max(1, int(round(n * scale))) for n in image.shape[:2])
    rows = make_coord((H,))[:, 0]
    cols = make_coord((W,))[:, 0]
    r = np.arange(top, top + height)
    c = np.arange(left, left + width)
    rin, cin = r[(r >= 0) & (r < H)], c[(c >= 0) & (c < W)]
    coord = np.stack(np.meshgrid(rows[rin], cols[cin], indexing="ij"), -1).reshape(1, -1, 2)
    cell = np.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / H, 2 / W
    inp = ((image.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
    pred = model.query(inp, coord, cell)[0]
    rgb = np.round(np.clip(pred * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8).reshape(len(rin), len(cin), 3)
    out = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), bool)
    out[np.ix_(rin - top, cin - left)] = rgb
    mask[np.ix_(rin - top, cin - left)] = True
    return out, mask
