"""The original `image-folder` and `paired-image-folders` datasets, as uint8 HxWx3 arrays.

Differences from the original, on purpose:
- items are uint8 HWC numpy arrays; the wrappers divide by 255 (same float32 bits);
- non-image names (by extension) raise or are skipped; hidden files (.DS_Store) are ignored;
- the 'bin' cache stores the image *after* RGB conversion and is named after the full
  file name, fixing the original's quirk 7 (grey/RGBA images and dotted names), and is
  written atomically so an interrupted run cannot leave a broken cache file; a cached array is
  trusted only when its source's size, mtime, ctime and inode match and the .npy is whole (`_cache_is_valid`).
"""
import json
import os
import warnings

import numpy as np
from PIL import Image

from liif.errors import ConfigError, DataError, DataLayoutError, ImageError
from liif.io import durable
from liif.io.jsontext import nesting

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CACHE_MODES = ("none", "in_memory", "bin")


def positive_count(name, value, optional=True):
    """`value` as an int >= 1 (None passes when `optional`). Zero would make an empty dataset that
    trains nothing and still reports success; a string or a float fails later, deep in NumPy."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or null' if optional else ''}, got {value!r}")
    return int(value)


def read_image(path):
    """Decode `path` to uint8 HxWx3 RGB, like the original's `Image.open(f).convert('RGB')`.

    Grey, palette, CMYK and RGBA (alpha dropped) go through Pillow's convert('RGB').
    16-bit grey (modes I;16* and I) is scaled with `value >> 8` before that, because
    Pillow's own convert would saturate everything above 255 to white; `>> 8` is what
    Pillow itself does when it reads 16-bit RGB PNGs (it keeps the high byte).
    An EXIF orientation (phone photos) is applied first.
    """
    try:
        with Image.open(path) as im:
            im.load()
            im = upright(im)
            if im.mode.startswith("I;16") or im.mode == "I":
                grey = np.asarray(im).astype(np.int64).clip(0, 65535) >> 8
                return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError:
        raise _too_large(path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def _too_large(path):
    """A valid header of more pixels than Pillow decodes (twice Image.MAX_IMAGE_PIXELS): too large, not unreadable."""
    name = path if isinstance(path, (str, os.PathLike)) else "the image"
    return ImageError(f"{name} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more than Pillow decodes (its limit "
                      "against decompression bombs); use a smaller image")


EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # the EXIF orientations that turn the image by 90 degrees


def upright(im):
    """The image as it is meant to be seen: a phone photo's EXIF orientation applied (the original
    code ignored it: phone photos came out sideways). Images without the tag are returned as they are."""
    from PIL import ImageOps
    return ImageOps.exif_transpose(im) if _orientation(im) not in (None, 1) else im


def _orientation(im):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": then there is no orientation to apply
            return im.getexif().get(EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: show the pixels as stored
        return None


def image_size(path):
    """(h, w) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return (im.width, im.height) if _orientation(im) in _SWAPS_AXES else (im.height, im.width)
    except Image.DecompressionBombError:  # not an OSError: it was a traceback
        raise _too_large(path) from None
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
    """The array, then the stamp of its source (written second: a stamp always describes a whole .npy)."""
    durable.write_atomic(path, lambda f: np.save(f, arr))


def _source_stamp(src):
    st = os.stat(src)  # ctime and inode too: a rewrite that restores size and mtime (cp -p, rsync -t) changes them
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _cache_is_valid(bin_path, src):
    """A cached array is used only when its stamp matches the source file's size, mtime and ctime (in
    ns: a same-second rewrite is seen; ctime cannot be set back) and inode, and the .npy itself is whole: a uint8 (h, w, 3) array of the
    source's size, with every byte present. The original trusted a file's mere existence; mtime
    alone missed same-second edits, copies with preserved times and truncated files."""
    try:
        with open(bin_path + ".stamp") as f:
            if json.load(f) != _source_stamp(src):
                return False
        with open(bin_path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            data_start = f.tell()
        h, w = image_size(src)
        return (dtype == np.uint8 and not fortran and shape == (h, w, 3)
                and os.path.getsize(bin_path) == data_start + h * w * 3)
    except (OSError, ValueError, TypeError, ImageError):
        return False


MAX_SPLIT_BYTES = 64 << 20  # CelebA-HQ's split of 30000 names is under 1 MB


def split_names(path, key):
    """The names under `key` of a split file (a JSON object of name lists). The path may come from a
    run folder's saved settings: only a regular file is opened (/dev/zero would be read forever), and
    at most MAX_SPLIT_BYTES of it; anything but a list of names there is a DataError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataLayoutError(f"split file not found (or not a regular file): {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_SPLIT_BYTES + 1)
    if len(data) > MAX_SPLIT_BYTES:
        raise DataError(f"split file {path} is over {MAX_SPLIT_BYTES >> 20} MB: not a split of image names")
    try:  # {key: [names]} nests 2 deep; measured first: json.loads recurses once per level
        depth = nesting(data)
        split = json.loads(data) if depth <= 2 else None
    except ValueError as e:  # bad JSON or UTF-8
        raise DataError(f"split file {path} is not JSON ({type(e).__name__}: {str(e)[:100]})") from None
    if depth > 2:
        raise DataError(f"split file {path} nests {depth} deep, not a JSON object of name lists")
    names = split.get(key) if isinstance(split, dict) else None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DataError(f"split file {path} has no list of image names under {key!r}")
    return names


class ImageFolder:
    """Images of one folder in sorted name order; item i is file i % n_files, uint8 HxWx3."""

    def __init__(self, root, first_k=None, repeat=1, cache="none", on_bad_file="error",
                 split_file=None, split_key=None):
        if cache not in CACHE_MODES:
            raise ConfigError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        self.root, self.repeat, self.cache = os.fspath(root), positive_count("repeat", repeat, optional=False), cache
        first_k = positive_count("first_k", first_k)
        if split_file is None:
            names = list_images(self.root, on_bad_file)
        else:  # the original's CelebA-HQ split: a json dict of name lists, kept in its order
            names = split_names(split_file, split_key)
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
            self._bins = [os.path.join(self.bin_dir, os.path.basename(f) + ".npy") for f in self.files]
            for f, b in zip(self.files, self._bins):
                # rewritten unless provably the image's (the original never refreshed it)
                if not _cache_is_valid(b, f):
                    _save_npy_atomic(b, read_image(f))
                    durable.write_text(b + ".stamp", json.dumps(_source_stamp(f)) + "\n")

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
