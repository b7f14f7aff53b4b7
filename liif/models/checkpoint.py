"""Checkpoint files in the original LIIF envelope, framework-neutral.

Layout (what the original `train_liif.py` writes, and what it can load back):

    {'model':     {'name': 'liif', 'args': {...}, 'sd': {key: tensor}},
     'optimizer': {'name': 'adam', 'args': {'lr': 1e-4}, 'sd': optimizer state},
     'epoch':     int,
     'liif':      {...}}   # ours only: framework, version, training state; ignored by the original

Tensors are held as NumPy arrays in memory; the file is torch's format, read and written by
`liif.io.torchfile` for both frameworks (NumPy only, and nothing in the file can run code), so
`torch.load(path, weights_only=True)` works on it. Writes go through `liif.io.durable.write_atomic`
(a temporary file in the same folder, then a rename), so an interruption never leaves a
half-written checkpoint behind.
"""
import os

import numpy as np

from liif.io import durable, torchfile
from liif.errors import CheckpointError  # noqa: F401  (also checkpoint.CheckpointError)


def read(path):
    """Read a checkpoint (the original's or ours) with every tensor as a NumPy array."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torchfile.load(path)
    except torchfile.TorchFileError as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    model = obj.get("model") if isinstance(obj, dict) else None
    if not (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("sd"), dict)
            and isinstance(model.get("args", {}), dict)):
        raise CheckpointError(f"{path} is not a LIIF checkpoint: expected a dict with 'model': {{'name', 'args', 'sd'}}")
    bad = [str(k) for k, v in model["sd"].items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    if bad:
        raise CheckpointError(f"{path} is not a LIIF checkpoint: state_dict entries that are not tensors: {', '.join(bad[:5])}")
    model.setdefault("args", {})
    return obj


def model_spec(ckpt, path):
    """The checkpoint's model spec {'name', 'args'}, checked against the registered constructors'
    signatures before anything is built (an unknown or mistyped argument is named)."""
    from liif.models import registry
    spec = {"name": ckpt["model"]["name"], "args": ckpt["model"]["args"]}
    problem = registry.spec_problem(spec)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return spec


def write(obj, path):
    """Write `obj` (tensors as NumPy arrays) atomically to `path` in torch's file format."""
    durable.write_atomic(path, lambda f: torchfile.save(obj, f))


def envelope(model_spec, model_sd, optimizer=None, epoch=0, extra=None):
    """The original layout; `extra` goes under the key 'liif', which the original ignores."""
    obj = {"model": {"name": model_spec["name"], "args": model_spec.get("args", {}), "sd": model_sd},
           "optimizer": optimizer if optimizer is not None else {"name": "adam", "args": {"lr": 1e-4}, "sd": {"state": {}, "param_groups": []}},
           "epoch": int(epoch)}
    if extra:
        obj["liif"] = extra
    return obj
