"""`python run.py task=demo checkpoint=CKPT input=IMG size=[H,W] output=OUT.png`.

Upscales any RGB, RGBA or grey image to any size (aspect ratio included) in bounded
memory: queries are decoded in chunks of `eval_bsize`.
"""
import logging
import os

import numpy as np

from liif.api import infer_options, load_model, parse_size
from liif.errors import BadInput, ConfigError

log = logging.getLogger(__name__)


def main(cfg):
    for key in ("checkpoint", "input", "size", "output"):
        if cfg.get(key) is None:
            raise ConfigError(f"task=demo needs {key}=...: python run.py task=demo checkpoint=CKPT input=IMG size=[H,W] output=OUT.png")
    size = parse_size(list(cfg.size) if not isinstance(cfg.size, (str, int, float)) else cfg.size)
    image = read_input(cfg.input)
    model = load_model(cfg.checkpoint, framework=cfg.framework.name, device=cfg.device, **infer_options(cfg.framework))
    sr = model.upscale(image, size, bsize=cfg.eval_bsize)
    write_png(sr, cfg.output)
    log.info("wrote %s (%dx%d) from %s (%dx%d)", cfg.output, size[0], size[1], cfg.input, image.shape[0], image.shape[1])
    return cfg.output


def read_input(path):
    from liif.data.image_folder import read_image
    if not os.path.isfile(path):
        raise BadInput(f"input image not found: {path}")
    return read_image(path)


def write_png(image, path):
    from PIL import Image

    from liif import durable
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    durable.replace(tmp, path)
