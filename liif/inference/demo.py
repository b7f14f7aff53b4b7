"""`python run.py task=demo checkpoint=CKPT input=IMG size=[H,W] output=OUT.png`.

Upscales any RGB, RGBA or grey image to any size (aspect ratio included) in bounded
memory: the input in tiles within `infer.max_memory` (liif/inference/tiled.py), queries decoded in
chunks of `eval_bsize`. Everything is checked before the model runs: the output path
(liif.io.outputs: never the input itself, a folder or a special file; the format from its
extension), the input (a regular file) and the memory the output needs. Ctrl-C or SIGTERM
stop it with one line and no temporary file left behind.
"""
import logging
import os
import stat
import sys

from tqdm import tqdm

from liif.inference.api import infer_options, load_model, tiling_options
from liif.errors import BadInput

log = logging.getLogger(__name__)


def main(config, choices=None):
    """`python run.py task=demo ...`: `config` is a liif.config.RunConfig (which holds checkpoint, input,
    size and output: RunConfig checks that)."""
    from liif.inference.memory import check_fits, upscale_bytes
    from liif.io.outputs import check_image_size, check_output_path, write_image
    from liif.run.rundir import Interrupted, interruptible
    size = tuple(config.size)
    input_path, checkpoint = _expand(config.input), _expand(config.checkpoint)
    output = check_output_path(config.output, inputs=(input_path, checkpoint))
    check_image_size(output, *size)
    check_fits(upscale_bytes(*size), f"an output of {size[0]}x{size[1]} pixels", advice="ask for a smaller size=")
    image = read_input(input_path)
    model = load_model(checkpoint, framework=config.framework.name, device=config.device,
                       **infer_options(config.framework))
    try:
        with interruptible():
            sr = upscale_with_progress(model, image, size, config.eval_bsize, tiling_options(config.infer))
            write_image(sr, output)
    except Interrupted as e:
        print(f"{e}: nothing was written to {output}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    log.info("wrote %s (%dx%d) from %s (%dx%d)", output, size[0], size[1], input_path, image.shape[0], image.shape[1])
    return output


def upscale_with_progress(model, image, size, bsize, tiling):
    """model.upscale with a progress bar over the output pixels and, once a few chunks of `bsize`
    queries are timed, an estimate of the whole."""
    from liif.run.progress import Estimate
    total = size[0] * size[1]
    estimate = Estimate("demo", -(-total // bsize), "chunk", note=f"; a chunk is up to eval_bsize={bsize} pixels")
    with tqdm(total=total, desc="upscaling", unit="px", unit_scale=True, leave=False, disable=None) as bar:
        def progress(done, _total):
            bar.update(done - bar.n)
            estimate.update()
        return model.upscale(image, size, bsize=bsize, progress=progress, **tiling)


def read_input(path):
    """The input image; a missing path, a folder or a special file (a fifo would block, /dev/zero
    would be read forever) is a one-line error."""
    from liif.data.image_folder import read_image
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        raise BadInput(f"input image not found: {path}") from None
    if stat.S_ISDIR(mode):
        raise BadInput(f"input={path} is a folder; give an image file")
    if not stat.S_ISREG(mode):
        raise BadInput(f"input={path} is not a regular file (a device, fifo or socket); give an image file")
    return read_image(path)


def _expand(path):
    return os.path.expanduser(str(path))
