"""The embedded sample set: real photographs shipped inside scikit-image, as a tiny DIV2K stand-in.

`ensure_sample_set(root)` writes them once as PNG into `root/train/` and `root/valid/`,
so training and evaluation can run end to end with no download. Every image is
resized (Lanczos, shorter edge 240) and centre-cropped to 240x240 or 240x360 (wide
images): small enough for CPU training, and divisible by 2, 3, 4, 5, 6 and 8 so that
integer-scale tests cut no border. Grey photographs are stored as RGB.

Valid holds three different kinds of content (a face with fabric, objects with
text-like detail, animal fur); train holds the other photographs, including
microscopy and astronomy for variety.
"""
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from liif.errors import SampleSetError

VERSION = "liif-sample-set v1"
MARKER = ".complete"  # written last: a set without it is incomplete
SHORT_EDGE = 240
WIDE_SIZE = (240, 360)  # (h, w) for images at least 1.25 times wider than high
SPLITS = {
    "train": ["rocket", "motorcycle", "retina", "immunohistochemistry", "hubble_deep_field",
              "camera", "coins"],
    "valid": ["astronaut", "coffee", "chelsea"],
}


def _load(name):
    import skimage.data  # only needed here, and slow to import

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view
    return getattr(skimage.data, name)()


def _prepare(img):
    """Any skimage photo -> uint8 RGB, resized to cover the target and centre-cropped."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    h, w = img.shape[:2]
    th, tw = WIDE_SIZE if w >= 1.25 * h else (SHORT_EDGE, SHORT_EDGE)
    k = max(th / h, tw / w)
    rh, rw = max(th, round(h * k)), max(tw, round(w * k))
    img = np.asarray(Image.fromarray(img).resize((rw, rh), Image.LANCZOS))
    top, left = (rh - th) // 2, (rw - tw) // 2
    return img[top:top + th, left:left + tw]


def is_complete(root):
    return os.path.isfile(os.path.join(root, MARKER))


def ensure_sample_set(root):
    """Make sure the sample set exists at `root` (train/ and valid/ of PNGs); return `root`.

    It is built in a temporary sibling folder and renamed into place, so concurrent
    callers never see half a set: the loser of the race drops its copy.
    """
    root = os.fspath(root)
    if is_complete(root):
        return root
    from liif.data.layouts import file_in_the_way
    blocker = file_in_the_way(root)
    if blocker:  # found before the photographs are written (a rename over a file failed after them)
        raise SampleSetError(f"cannot make the sample set in {root}: {blocker} is a file, not a folder; point "
                             "paths.sample_dir (LIIF_SAMPLE_DIR) or paths.data_dir (LIIF_DATA) at a folder")
    if os.path.isdir(root) and os.listdir(root):
        raise SampleSetError(f"{root} exists and is not a complete sample set (no {MARKER}); "
                              f"remove it or choose another folder")
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(root)}.tmp_")
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the set is ordinary shared data
        for split, names in SPLITS.items():
            os.makedirs(os.path.join(tmp, split))
            for name in names:
                Image.fromarray(_prepare(_load(name))).save(os.path.join(tmp, split, name + ".png"))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(VERSION + "\n")
        try:
            os.rename(tmp, root)  # replaces an empty folder; fails if another process got there first
        except OSError:
            if not is_complete(root):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
