"""What the viewer may show: the checkpoints and images named on the command line (or a sweep's
runs, or the sample set's validation photos), and uploads. The browser only ever names them by
the ids given here, never by a path."""
import glob
import io
import os
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from liif.errors import CheckpointError, ImageError, InputTooLarge, LiifError
from liif.run.untrusted import inside, printable


@dataclass
class Checkpoint:
    """A loaded model and its label; `lock` serialises its renders (the network holds the features)."""
    id: str
    path: str
    label: dict
    model: object
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Picture:
    """An image to view: `lr` is what the models see; `hr` the ground truth it was downscaled from (or None)."""
    id: str
    name: str
    lr: np.ndarray
    hr: np.ndarray | None = None
    factor: int | None = None

    def as_dict(self):
        return {"id": self.id, "name": self.name, "height": int(self.lr.shape[0]), "width": int(self.lr.shape[1]),
                "ground_truth": self.hr is not None, "factor": self.factor}


def sweep_checkpoints(sweep_dir):
    """epoch-last.pth of every run of a sweep folder (multirun/<date>/<time>), in run order. The
    folder may be a copy of anyone's: a checkpoint that a link in it (the run, `checkpoints/` or the
    file) takes out of the folder is refused, naming it; the viewer reads only the folder's own."""
    if not os.path.isdir(sweep_dir):
        raise LiifError(f"sweep folder not found: {sweep_dir}")
    paths = sorted(glob.glob(os.path.join(glob.escape(sweep_dir), "*", "checkpoints", "epoch-last.pth")))
    if not paths:
        raise LiifError(f"no run of {sweep_dir} has a checkpoint (expected <run>/checkpoints/epoch-last.pth)")
    for path in paths:
        if not inside(path, sweep_dir):
            raise CheckpointError(f"{printable(path, 300)} leads out of {sweep_dir} through a link: dir= shows only "
                                  "the folder's own checkpoints (name another one with checkpoint=)")
    return paths


def label(path, ckpt):
    """Model, framework, run and epoch of a checkpoint, for the pane's title. The checkpoint's own
    fields are shown only when of the type a training writes (it may come from anyone)."""
    spec = ckpt["model"]
    encoder = _field(_field(spec, "args", dict, {}), "encoder_spec", dict, {}).get("name")
    folder = os.path.dirname(os.path.abspath(path))
    run = os.path.basename(os.path.dirname(folder)) if os.path.basename(folder) == "checkpoints" else os.path.basename(path)
    return {"model": spec["name"] + (f" ({encoder})" if isinstance(encoder, str) else ""),
            "framework": _field(_field(ckpt, "liif", dict, {}), "framework", str, "original code"),
            "run": run, "epoch": _field(ckpt, "epoch", int, None)}


def _field(mapping, key, kind, default):
    value = mapping.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def load_checkpoints(paths, framework="torch", device="auto", options=None):
    from liif.inference.api import load_model_and_checkpoint

    loaded = []
    for i, path in enumerate(paths):
        # a bad file is a CheckpointError (a LiifError): one line
        model, ckpt = load_model_and_checkpoint(path, framework=framework, device=device, **(options or {}))
        loaded.append(Checkpoint(f"m{i}", path, label(path, ckpt), model))
    return loaded


def make_picture(id, name, rgb, factor=None):
    """A picture from an RGB image; with `factor`, the image is the ground truth and the models see it
    cropped to a multiple of `factor` and downscaled by Pillow bicubic, as the test protocol does."""
    if not factor:
        return Picture(id, name, rgb)
    from liif.data.resize import resize_bicubic

    h, w = (n // factor for n in rgb.shape[:2])
    if min(h, w) < 1:
        raise LiifError(f"{name} ({rgb.shape[0]}x{rgb.shape[1]}) is smaller than downscale={factor}")
    hr = np.ascontiguousarray(rgb[:h * factor, :w * factor])
    return Picture(id, name, resize_bicubic(hr, (h, w)), hr, factor)


def load_pictures(input_path, sample_dir, factor=None):
    """The image of input=, else the sample set's validation photos."""
    from liif.data.image_folder import read_image

    if input_path:
        paths = [input_path]
    else:
        from liif.data.sample import ensure_sample_set
        paths = sorted(glob.glob(os.path.join(ensure_sample_set(sample_dir), "valid", "*.png")))
    pictures = []
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            raise LiifError(f"input image not found: {path}")
        pictures.append(make_picture(f"i{i}", os.path.basename(path), read_image(path), factor))  # ImageError: one line
    return pictures


def decode_upload(data, max_pixels):
    """uint8 HxWx3 from uploaded bytes; refuses non-images (ImageError) and images over `max_pixels`
    (InputTooLarge) before decoding them."""
    from PIL import Image

    from liif.data.image_folder import read_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the cap below is the viewer's, and lower
            with Image.open(io.BytesIO(data)) as im:
                h, w = im.height, im.width
    except Image.DecompressionBombError:  # a valid header of more than twice Pillow's limit: too large, not garbage
        raise InputTooLarge(f"the image has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; the viewer takes at most "
                            f"{max_pixels:,} pixels") from None
    except Exception:  # Pillow raises many kinds for non-images
        raise ImageError("the upload is not an image Pillow can read (PNG, JPEG, BMP, TIFF, WebP ...)") from None
    if h * w > max_pixels:
        raise InputTooLarge(f"the image is {w}x{h} pixels; the viewer takes at most {max_pixels:,} pixels")
    try:
        return read_image(io.BytesIO(data))
    except ImageError:
        raise ImageError("the upload is a damaged or truncated image") from None
