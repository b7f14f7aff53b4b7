"""The original `image-folder` and `paired-image-folders` datasets, as uint8 HxWx3 arrays.

Differences from the original, on purpose:
- items are uint8 HWC numpy arrays; the wrappers divide by 255 (same float32 bits);
- non-image names (by extension) raise or are skipped; hidden files (.DS_Store) are ignored;
- the 'bin' cache stores the image *after* RGB conversion and is named after the full
  file name, fixing the original's quirk 7 (grey/RGBA images and dotted names), and is
  written atomically so an interrupted run cannot leave a broken cache file.
"""
import json
import os
import tempfile
import warnings

import numpy as np
from PIL import Image

from liif.errors import ConfigError, DataError, DataLayoutError, ImageError  # noqa: F401  (ImageError: re-exported)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CACHE_MODES = ("none", "in_memory", "bin")


def read_image(path):
    """Decode `path` to uint8 HxWx3 RGB, like the original's `Image.open(f).convert('RGB')`.

    Grey, palette, CMYK and RGBA (alpha dropped) go through Pillow's convert('RGB').
    16-bit grey (modes I;16* and I) is scaled with `value >> 8` before that, because
    Pillow's own convert would saturate everything above 255 to white; `>> 8` is what
    Pillow itself does when it reads 16-bit RGB PNGs (it keeps the high byte).
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I;16") or im.mode == "I":
                grey = np.asarray(im).astype(np.int64).clip(0, 65535) >> 8
                return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def image_size(path):
    """(h, w) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(root, on_bad_file="error"):
    """The image file names of `root`, sorted; non-image names raise or warn (`on_bad_file`)."""
    if on_bad_file not in ("error", "skip"):
        raise ConfigError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    if not os.path.isdir(root):
        raise DataLayoutError(f"image folder not found: {root}")
    names = []
    for name in sorted(os.listdir(root)):
        if name.startswith("."):
            continue  # OS metadata (.DS_Store, ._*), never a dataset image
        if _is_image_name(name) and os.path.isfile(os.path.join(root, name)):
            names.append(name)
        elif on_bad_file == "error":
            raise DataError(f"not an image file: {os.path.join(root, name)} "
                             f"(extensions {', '.join(IMAGE_EXTENSIONS)}; on_bad_file='skip' ignores it)")
        else:
            warnings.warn(f"skipping non-image file {os.path.join(root, name)}", stacklevel=3)
    return names


def _save_npy_atomic(path, arr):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ImageFolder:
    """Images of one folder in sorted name order; item i is file i % n_files, uint8 HxWx3."""

    def __init__(self, root, first_k=None, repeat=1, cache="none", on_bad_file="error",
                 split_file=None, split_key=None):
        if cache not in CACHE_MODES:
            raise ConfigError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        self.root, self.repeat, self.cache = os.fspath(root), int(repeat), cache
        if split_file is None:
            names = list_images(self.root, on_bad_file)
        else:  # the original's CelebA-HQ split: a json dict of name lists, kept in its order
            with open(split_file) as f:
                names = json.load(f)[split_key]
        if first_k is not None:
            names = names[:first_k]
        if not names:
            raise DataError(f"no images in {self.root}")
        self.files = [os.path.join(self.root, n) for n in names]

        if cache == "in_memory":
            self._arrays = [self._frozen(read_image(f)) for f in self.files]
        elif cache == "bin":
            parent, base = os.path.split(os.path.abspath(self.root))
            self.bin_dir = os.path.join(parent, "_bin_" + base)
            os.makedirs(self.bin_dir, exist_ok=True)
            self._bins = [os.path.join(self.bin_dir, os.path.basename(f) + ".npy") for f in self.files]
            for f, b in zip(self.files, self._bins):
                # rewrite when missing or older than its image (the original never refreshed it)
                if not os.path.exists(b) or os.path.getmtime(b) < os.path.getmtime(f):
                    _save_npy_atomic(b, read_image(f))

    @staticmethod
    def _frozen(arr):
        arr.flags.writeable = False  # shared between items: callers must not edit it in place
        return arr

    def __len__(self):
        return len(self.files) * self.repeat

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        k = i % len(self.files)
        if self.cache == "in_memory":
            return self._arrays[k]
        if self.cache == "bin":
            return np.load(self._bins[k])
        return read_image(self.files[k])


class PairedImageFolders:
    """Two ImageFolders zipped by index (sorted-name order, as the original); item = (img1, img2)."""

    def __init__(self, root_1, root_2, **kwargs):
        self.dataset_1 = ImageFolder(root_1, **kwargs)
        self.dataset_2 = ImageFolder(root_2, **kwargs)
        n1, n2 = len(self.dataset_1.files), len(self.dataset_2.files)
        if n1 != n2:
            raise DataError(f"paired folders hold different numbers of images: "
                             f"{n1} in {root_1} and {n2} in {root_2}")

    def __len__(self):
        return len(self.dataset_1)

    def __getitem__(self, i):
        return self.dataset_1[i], self.dataset_2[i]


def image_folder(root_path, split_file=None, split_key=None, first_k=None, repeat=1,
                 cache="none", on_bad_file="error"):
    """Registry entry `image-folder`, with the original config's argument names."""
    return ImageFolder(root_path, first_k=first_k, repeat=repeat, cache=cache,
                       on_bad_file=on_bad_file, split_file=split_file, split_key=split_key)


def paired_image_folders(root_path_1, root_path_2, **kwargs):
    """Registry entry `paired-image-folders`, with the original config's argument names."""
    return PairedImageFolders(root_path_1, root_path_2, **kwargs)
