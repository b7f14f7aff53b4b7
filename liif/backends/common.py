"""Framework-free helpers shared by the backend modules."""
import numpy as np

from liif.errors import CheckpointError, ConfigError


def check_state_dict(own_shapes, sd):
    """Raise a CheckpointError (a ValueError) naming the missing, unexpected and mis-shaped keys of `sd` against
    `own_shapes` ({key: shape} of the model), so that loading is strict on every backend."""
    missing = sorted(set(own_shapes) - set(sd))
    unexpected = sorted(set(sd) - set(own_shapes))
    shapes = [k for k in own_shapes if k in sd and tuple(own_shapes[k]) != tuple(np.shape(sd[k]))]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "checkpoint does not fit the model: "
            + "; ".join(f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys))


def check_dtype(dtype):
    """The model float types both backends support; float64 is for numerical checks."""
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"unknown dtype '{dtype}'; use float32 or float64")
    return dtype
