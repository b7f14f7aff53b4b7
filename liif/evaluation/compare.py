"""What the method does, in one picture per test scale: the input, bicubic interpolation, the
model and the ground truth side by side, on the same crop, with each crop's PSNR.

`write_comparison(path, lr, bicubic, sr, hr, scale)` writes `<set>_x<scale>_compare.png` (the
test writes one per set and scale into the run's `samples/`, and training logs them to
TensorBoard). The input is shown nearest-neighbour enlarged, so its pixels stay visible. The
PSNRs are plain RGB PSNR over the crop shown (no border shave), also stored as PNG text fields
(`psnr_bicubic`, `psnr_model`, `layout`) for scripts.
"""
import json

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from liif.evaluation import metrics
from liif.io.durable import write_atomic

CROP = 192      # the largest crop side shown (pixels of the ground truth)
GAP = 4         # pixels between tiles
CAPTION = 16    # height of the caption strip above the tiles
TITLES = ("input", "bicubic", "model", "ground truth")


def centre_crop_box(height, width, scale, side=CROP):
    """(top, left, size) of a centred square on the output grid, on whole input pixels."""
    size = min(height, width, side)
    if size >= scale:
        size = size // scale * scale
    top = (height - size) // 2 // scale * scale
    left = (width - size) // 2 // scale * scale
    return top, left, size


def comparison(lr, bicubic, sr, hr, scale):
    """lr (3,h,w); bicubic, sr, hr (1,3,H,W), all in [0,1] -> (uint8 panel HxWx3, {psnr_bicubic, psnr_model, layout})."""
    _, _, height, width = hr.shape
    top, left, size = centre_crop_box(height, width, scale)
    crop = lambda x: x[:, :, top:top + size, left:left + size]  # noqa: E731
    h, w = lr.shape[1:]
    lr_box = (round(top * h / height), round(left * w / width))
    lr_size = max(1, round(size * h / height)), max(1, round(size * w / width))
    lr_crop = lr[:, lr_box[0]:lr_box[0] + lr_size[0], lr_box[1]:lr_box[1] + lr_size[1]]
    psnr_bicubic = metrics.psnr(crop(bicubic), crop(hr))
    psnr_model = metrics.psnr(crop(sr), crop(hr))
    tiles = [Image.fromarray(_uint8(lr_crop)).resize((size, size), Image.NEAREST)]
    tiles += [Image.fromarray(_uint8(crop(x)[0])) for x in (bicubic, sr, hr)]
    captions = (f"input x{scale} ({lr_crop.shape[1]}x{lr_crop.shape[2]})", f"bicubic {psnr_bicubic:.2f} dB",
                f"model {psnr_model:.2f} dB", "ground truth")
    panel = Image.new("RGB", (4 * size + 3 * GAP, CAPTION + size), "white")
    draw, font = ImageDraw.Draw(panel), ImageFont.load_default()
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x = i * (size + GAP)
        panel.paste(tile, (x, CAPTION))
        draw.text((x + 2, 2), caption, fill="black", font=font)
    layout = {"top": CAPTION, "size": size, "gap": GAP, "tiles": list(TITLES)}
    return np.asarray(panel), {"psnr_bicubic": psnr_bicubic, "psnr_model": psnr_model, "layout": layout}


def write_comparison(path, lr, bicubic, sr, hr, scale):
    panel, info = comparison(lr, bicubic, sr, hr, scale)
    text = PngImagePlugin.PngInfo()
    for key in ("psnr_bicubic", "psnr_model"):
        text.add_text(key, f"{info[key]:.4f}")
    text.add_text("layout", json.dumps(info["layout"]))
    write_atomic(path, lambda f: Image.fromarray(panel).save(f, format="PNG", pnginfo=text))
    return info


def _uint8(x):
    """(3,H,W) in [0,1] -> HxWx3 uint8."""
    return np.round(np.clip(x, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
