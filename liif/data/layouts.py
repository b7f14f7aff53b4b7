"""Where the datasets live under one data root, and the evaluation set of one (set, scale).

The paths are those of the original configs (DIV2K, and the EDSR benchmark package with
Set5, Set14, B100, Urban100). A missing folder raises `DataLayoutError`, whose message
shows the expected tree with the real data root filled in.
"""
import os
from dataclasses import dataclass

from liif.data.image_folder import ImageFolder, PairedImageFolders, image_size
from liif.data.wrappers import SRImplicitDownsampled, SRImplicitPaired
from liif.errors import ConfigError, DataError, DataLayoutError  # noqa: F401  (DataLayoutError: re-exported)

DIV2K_TREE = """\
{root}/DIV2K/DIV2K_train_HR/*.png                 0001.png ... 0800.png
{root}/DIV2K/DIV2K_valid_HR/*.png                 0801.png ... 0900.png
{root}/DIV2K/DIV2K_valid_LR_bicubic/X2/*.png      0801x2.png ... (X3, X4 likewise)
  (DIV2K_valid_LR_bicubic is optional: x2-x4 use it if present, otherwise the HR is downsampled)"""

BENCHMARK_TREE = """\
{root}/benchmark/{name}/HR/*.png
{root}/benchmark/{name}/LR_bicubic/X2/*.png   (X3, X4 likewise)
  (LR_bicubic is optional: x2-x4 use it if present, otherwise the HR is downsampled)"""

FOLDER_TREE = "{root}/*.png   (any image files: png, jpg, jpeg, bmp, tif, tiff, webp)"


def require(path, layout_text):
    """Return `path` if it is a folder, else raise DataLayoutError showing `layout_text`."""
    if not os.path.isdir(path):
        raise DataLayoutError(f"dataset folder not found: {path}\nexpected layout:\n{layout_text}")
    return path


@dataclass(frozen=True)
class DIV2K:
    data_dir: str

    @property
    def train_hr(self):
        return os.path.join(self.data_dir, "DIV2K", "DIV2K_train_HR")

    @property
    def valid_hr(self):
        return os.path.join(self.data_dir, "DIV2K", "DIV2K_valid_HR")

    def valid_lr(self, scale):
        # file names are 0801x2.png ...: paired with the HR by sorted order, as the original
        return os.path.join(self.data_dir, "DIV2K", "DIV2K_valid_LR_bicubic", f"X{scale}")

    @property
    def tree(self):
        return DIV2K_TREE.format(root=self.data_dir)


@dataclass(frozen=True)
class Benchmark:
    data_dir: str
    name: str

    @property
    def hr(self):
        return os.path.join(self.data_dir, "benchmark", self.name, "HR")

    def lr(self, scale):
        return os.path.join(self.data_dir, "benchmark", self.name, "LR_bicubic", f"X{scale}")

    @property
    def tree(self):
        return BENCHMARK_TREE.format(root=self.data_dir, name=self.name)


@dataclass(frozen=True)
class Folder:
    path: str

    @property
    def hr(self):
        return self.path

    def lr(self, scale):
        return None  # a plain folder has no LR files: every scale is downsampled

    @property
    def tree(self):
        return FOLDER_TREE.format(root=self.path)


def div2k(data_dir):
    return DIV2K(os.fspath(data_dir))


def benchmark(data_dir, name):
    return Benchmark(os.fspath(data_dir), name)


def folder(path):
    return Folder(os.fspath(path))


def _check_pairs(pairs, scale):
    """Each HR must be `scale` times its LR (H_hr // H_lr, as the original reads the scale)."""
    for lr_file, hr_file in zip(pairs.dataset_1.files, pairs.dataset_2.files):
        (h_lr, w_lr), (h_hr, w_hr) = image_size(lr_file), image_size(hr_file)
        if h_hr // h_lr != scale or w_hr // w_lr != scale:
            raise DataError(f"LR {lr_file} ({h_lr}x{w_lr}) and HR {hr_file} ({h_hr}x{w_hr}) "
                             f"are not a x{scale} pair (sorted-name pairing; counts and order must match)")


def test_set(hr_dir, lr_dir=None, scale=2, layout_text=None, on_bad_file="error", split_file=None, split_key=None):
    """The evaluation dataset for one (set, scale), as the original test configs build it.

    With an existing `lr_dir`: the given LR files, whole images (`sr-implicit-paired`).
    Otherwise: the HR cut top-left to a multiple of the scale and downsampled by Pillow
    bicubic (`sr-implicit-downsampled`, test mode).
    """
    require(hr_dir, layout_text or FOLDER_TREE.format(root=hr_dir))
    if lr_dir is not None and os.path.isdir(lr_dir):
        if scale != int(scale):
            raise ConfigError(f"paired LR files need an integer scale, got {scale}")
        pairs = PairedImageFolders(lr_dir, hr_dir, on_bad_file=on_bad_file, split_file=split_file, split_key=split_key)
        _check_pairs(pairs, int(scale))
        return SRImplicitPaired(pairs)
    folder = ImageFolder(hr_dir, on_bad_file=on_bad_file, split_file=split_file, split_key=split_key)
    _check_holds_a_pixel(folder, scale)
    return SRImplicitDownsampled(folder, scale_min=scale)


def _check_holds_a_pixel(folder, scale):
    """Downsampling by `scale` must leave at least one LR pixel (a 1x1 image at x4 left none: a
    ZeroDivisionError deep in the coordinates); checked from the file headers, before any work."""
    for path in folder.files:
        h, w = image_size(path)
        if min(h, w) < scale:
            raise DataError(f"{path} is {h}x{w}, smaller than the scale x{scale}: downsampling it leaves no "
                                  "pixel; remove it, or test at a scale of at most its shorter side")


test_set.__test__ = False  # not a pytest test, despite the name
