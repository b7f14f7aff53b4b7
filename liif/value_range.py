"""The networks' value range: images in [0, 1] go in as [-1, 1], predictions come back the same way.

original: `data_norm` of the training and test configs, inp and gt both {sub: 0.5, div: 0.5}:
the input is `(x - sub) / div`, the prediction `pred * div + sub` then clamped to [0, 1].
The float32 operations are the original's, in its order: `(x - 0.5) / 0.5` is not always
bit-equal to `x * 2 - 1`, and every prediction and PSNR of the reference fixtures depends on it.

`to_model_range` and `from_model_range` take NumPy arrays and framework tensors alike (the tiled
engine maps its predictions on the device); the uint8 forms are NumPy.
"""
import numpy as np

SUB, DIV = 0.5, 0.5


def to_model_range(x):
    """[0, 1] -> [-1, 1]: `(x - 0.5) / 0.5`."""
    return (x - SUB) / DIV


def from_model_range(pred):
    """[-1, 1] -> [0, 1]: `pred * 0.5 + 0.5`, not clipped (clip it, or round it with the backend's
    `to_uint8`, which clips)."""
    return pred * DIV + SUB


def image_to_model_range(image):
    """uint8 -> float32 in [-1, 1]: `to_model_range(image / 255)`, in float32."""
    return to_model_range(image.astype(np.float32) / 255)


def model_range_to_image(pred):
    """float32 in [-1, 1] -> uint8: `round(clip(pred * 0.5 + 0.5, 0, 1) * 255)`, in float32, halves
    to even (as the backends' `to_uint8`)."""
    return np.round(np.clip(from_model_range(pred), 0, 1) * np.float32(255)).astype(np.uint8)
