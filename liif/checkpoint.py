"""Checkpoint files in the original LIIF envelope, framework-neutral.

Layout (what the original `train_liif.py` writes, and what it can load back):

    {'model':     {'name': 'liif', 'args': {...}, 'sd': {key: tensor}},
     'optimizer': {'name': 'adam', 'args': {'lr': 1e-4}, 'sd': optimizer state},
     'epoch':     int,
     'liif':      {...}}   # ours only: framework, version, training state; ignored by the original

Tensors are held as NumPy arrays in memory; the file is torch's format (written by the
backend), so `torch.load(path, weights_only=True)` works on it. Writes are atomic: a
temporary file in the same folder, then a rename, so an interruption never leaves a
half-written checkpoint behind.
"""
import os
import tempfile


def read(path, backend):
    """Read a checkpoint (the original's or ours) with every tensor as a NumPy array."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = backend.load_file(path)
    except Exception as e:  # any unpickling/zip error means "not a checkpoint"
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {reason})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("model"), dict) and {"name", "sd"} <= set(obj["model"])):
        raise ValueError(f"{path} is not a LIIF checkpoint: expected a dict with 'model': {{'name', 'args', 'sd'}}")
    obj["model"].setdefault("args", {})
    return obj


def write(obj, path, backend):
    """Write `obj` (tensors as NumPy arrays) atomically to `path` in torch's file format."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    os.close(fd)
    try:
        backend.save_file(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def envelope(model_spec, model_sd, optimizer=None, epoch=0, extra=None):
    """The original layout; `extra` goes under the key 'liif', which the original ignores."""
    obj = {"model": {"name": model_spec["name"], "args": model_spec.get("args", {}), "sd": model_sd},
           "optimizer": optimizer if optimizer is not None else {"name": "adam", "args": {"lr": 1e-4}, "sd": {"state": {}, "param_groups": []}},
           "epoch": int(epoch)}
    if extra:
        obj["liif"] = extra
    return obj
