"""The expected folder trees, and the evaluation set of one (set, scale).

The dataset paths themselves are in conf/dataset/ (those of the original configs). A missing
folder raises `DataLayoutError`, whose message shows the expected tree with the real root filled in.
"""
import os

from liif.data.image_folder import ImageFolder, PairedImageFolders, image_size
from liif.data.wrappers import SRImplicitDownsampled, SRImplicitPaired
from liif.errors import ConfigError, DataError, DataLayoutError

DIV2K_TREE = """\
{root}/DIV2K/DIV2K_train_HR/*.png                 0001.png ... 0800.png
{root}/DIV2K/DIV2K_valid_HR/*.png                 0801.png ... 0900.png
{root}/DIV2K/DIV2K_valid_LR_bicubic/X2/*.png      0801x2.png ... (X3, X4 likewise)
  (DIV2K_valid_LR_bicubic is optional: x2-x4 use it if present, otherwise the HR is downsampled)"""

FOLDER_TREE = "{root}/*.png   (any image files: png, jpg, jpeg, bmp, tif, tiff, webp)"


def require(path, layout_text):
    """Return `path` if it is a folder, else raise DataLayoutError showing `layout_text` (and the file
    in the way, where a file stands where a folder is expected: LIIF_DATA set to a file)."""
    if not os.path.isdir(path):
        blocker = file_in_the_way(path)
        if blocker == os.path.abspath(path):
            raise DataLayoutError(f"dataset folder {path} is a file, not a folder\nexpected layout:\n{layout_text}")
        why = f" ({blocker} is a file, not a folder: check paths.data_dir, which LIIF_DATA sets)" if blocker else ""
        raise DataLayoutError(f"dataset folder not found: {path}{why}\nexpected layout:\n{layout_text}")
    return path


def file_in_the_way(path):
    """The absolute path of `path` itself or of the first of its folders that exists and is not a
    folder, or None (the path is missing, or is a folder)."""
    path = os.path.abspath(path)
    parts = [path]
    while os.path.dirname(parts[-1]) != parts[-1]:
        parts.append(os.path.dirname(parts[-1]))
    for part in reversed(parts):
        if not os.path.exists(part):
            return None
        if not os.path.isdir(part):
            return part
    return None


def _check_pairs(pairs, scale):
    """Each HR must be `scale` times its LR (H_hr // H_lr, as the original reads the scale)."""
    for lr_file, hr_file in zip(pairs.dataset_1.files, pairs.dataset_2.files):
        (h_lr, w_lr), (h_hr, w_hr) = image_size(lr_file), image_size(hr_file)
        if h_hr // h_lr != scale or w_hr // w_lr != scale:
            raise DataError(f"LR {lr_file} ({h_lr}x{w_lr}) and HR {hr_file} ({h_hr}x{w_hr}) "
                             f"are not a x{scale} pair (sorted-name pairing; counts and order must match)")


def test_set(hr_dir, lr_dir=None, scale=2, layout_text=None, on_bad_file="error", split_file=None, split_key=None,
             shave=0, eval_type="none"):
    """The evaluation dataset for one (set, scale), as the original test configs build it.

    With an existing `lr_dir`: the given LR files, whole images (`sr-implicit-paired`).
    Otherwise: the HR cut top-left to a multiple of the scale and downsampled by Pillow
    bicubic (`sr-implicit-downsampled`, test mode). `shave`: the pixels the metrics of
    `eval_type` leave out at each border; an HR image must be larger than twice that.
    """
    require(hr_dir, layout_text or FOLDER_TREE.format(root=hr_dir))
    if lr_dir is not None and os.path.isdir(lr_dir):
        if scale != int(scale):
            raise ConfigError(f"paired LR files need an integer scale, got {scale}")
        pairs = PairedImageFolders(lr_dir, hr_dir, on_bad_file=on_bad_file, split_file=split_file, split_key=split_key)
        _check_pairs(pairs, int(scale))
        _check_sizes(pairs.dataset_2.files, None, shave, eval_type)
        return SRImplicitPaired(pairs)
    folder = ImageFolder(hr_dir, on_bad_file=on_bad_file, split_file=split_file, split_key=split_key)
    _check_sizes(folder.files, scale, shave, eval_type)
    return SRImplicitDownsampled(folder, scale_min=scale)


def _check_sizes(hr_files, scale, shave, eval_type):
    """From the file headers, before any work: downsampling by `scale` (None: the LR files are given)
    must leave at least one LR pixel (a 1x1 image at x4 left none: a ZeroDivisionError deep in the
    coordinates), and the protocol's shave must leave pixels to measure (a PSNR of no pixels was NaN)."""
    for path in hr_files:
        h, w = image_size(path)
        if scale is not None and min(h, w) < scale:
            raise DataError(f"{path} is {h}x{w}, smaller than the scale x{scale}: downsampling it leaves no "
                                  "pixel; remove it, or test at a scale of at most its shorter side")
        kept = (h, w) if scale is None else (int(h // scale * scale), int(w // scale * scale))  # the HR the test crops
        if min(kept) <= 2 * shave:
            raise DataError(f"{path} is {h}x{w}: the {eval_type} protocol shaves {shave} pixels from each border, which "
                            "leaves nothing to measure; remove it, or test the set with its protocol none")


test_set.__test__ = False  # not a pytest test, despite the name
