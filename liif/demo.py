"""`python run.py task=demo checkpoint=CKPT input=IMG size=[H,W] output=OUT.png`.

Upscales any RGB, RGBA or grey image to any size (aspect ratio included) in bounded
memory: the input in tiles within `infer.max_memory` (liif/tiled.py), queries decoded in
chunks of `eval_bsize`.
"""
import logging
import os

import numpy as np

from liif.api import infer_options, load_model, parse_size, tiling_options
from liif.errors import BadInput, ConfigError

log = logging.getLogger(__name__)


def main(config, choices=None):
    """`python run.py task=demo ...`: `config` is a liif.config.RunConfig."""
    for key in ("checkpoint", "input", "size", "output"):
        if getattr(config, key) is None:
            raise ConfigError(f"task=demo needs {key}=...: python run.py task=demo checkpoint=CKPT input=IMG size=[H,W] output=OUT.png")
    size = parse_size(config.size)
    image = read_input(config.input)
    model = load_model(config.checkpoint, framework=config.framework.name, device=config.device,
                       **infer_options(config.framework))
    sr = model.upscale(image, size, bsize=config.eval_bsize, **tiling_options(config.infer))
    write_png(sr, config.output)
    log.info("wrote %s (%dx%d) from %s (%dx%d)", config.output, size[0], size[1], config.input, image.shape[0],
             image.shape[1])
    return config.output


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
