"""The original `resize_fn`: torchvision `Resize(size, Image.BICUBIC)` on a PIL image.

The original converts the [0, 1] tensor to 8 bits (lossless for uint8/255 data), lets
Pillow resize it (bicubic, a = -0.5, antialiased when shrinking) and converts back, so
the low-resolution image is always 8-bit. Here the data stays uint8 end to end, which
gives the same bits without the two conversions.
"""
import numpy as np
from PIL import Image


def resized_shape(hw, size):
    """(h, w) of the result of resizing an image of shape `hw` to `size`, as torchvision does.

    An int is the length of the shorter edge, the longer one keeps the aspect ratio
    (truncated, torchvision's `int(size * long / short)`); a pair is (h, w).
    """
    if isinstance(size, (int, np.integer)):
        h, w = hw
        if h <= w:
            return int(size), int(size * w / h)
        return int(size * h / w), int(size)
    h, w = size
    return int(h), int(w)


def resize_bicubic(img, size):
    """Resize a uint8 HxWx3 image to `size` (int: shorter edge, or (h, w)) with Pillow bicubic."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"resize_bicubic expects uint8 data, got {img.dtype}")
    h, w = resized_shape(img.shape[:2], size)
    # PIL sizes are (width, height). A same-size resize returns an exact copy.
    out = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BICUBIC)
    return np.asarray(out)
