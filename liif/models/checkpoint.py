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

`load` is the one way a checkpoint's weights reach a network (the API's `load_model` and
`create_model`, the trainer's resume and initial weights, the viewer): every check applies to all.
"""
import json
import os
import stat
from dataclasses import dataclass

import numpy as np

from liif.io import durable, torchfile
from liif.errors import CheckpointError
from liif.models import registry


def read(path):
    """Read a checkpoint (the original's or ours) with every tensor as a NumPy array (a view into
    its storage, shared as torch shares it: see liif.io.torchfile)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"checkpoint={path} is a folder; give a checkpoint file (.pth)")
    if not stat.S_ISREG(mode):  # a fifo would block, a device be read forever
        raise CheckpointError(f"checkpoint={path} is not a regular file (a device, fifo or socket); "
                              "give a checkpoint file (.pth)")
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
    spec = {"name": ckpt["model"]["name"], "args": ckpt["model"]["args"]}
    problem = registry.spec_problem(spec)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return spec


@dataclass
class Loaded:
    """A network with a checkpoint's weights: `spec` is the checkpoint's model, `ckpt` the whole file."""
    net: object
    spec: dict
    ckpt: dict


def load(path, backend, expected=None, expected_label="the model asked for", net=None):
    """Read the checkpoint `path` and load its weights into a network on `backend`.

    Checked, each a one-line CheckpointError naming `path`: the file is a LIIF checkpoint
    (`read`); its model spec fits the registered constructors' signatures (`model_spec`); with
    `expected` (a spec), it holds that very model, defaults spelled out (`expected_label` names it
    in the message); its weights fit the network (missing, unexpected and mis-shaped keys); they
    are finite. The network is `net` (one of `expected`'s model, already built) or one built
    from the checkpoint's spec; a constructor that fails on a spec that passed these checks raises
    its own exception (a bug, not a bad file).
    """
    ckpt = read(path)
    spec = model_spec(ckpt, path)
    if expected is not None:
        difference = first_difference(spec, expected)
        if difference:
            raise CheckpointError(f"{path} holds another model than {expected_label}: {difference}")
    state_dict = ckpt["model"]["sd"]
    if net is None:
        net = registry.make(spec, backend)
    try:
        backend.load_state_dict_numpy(net, state_dict)  # strict: raises CheckpointError on a misfit
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    # only now that each tensor has its parameter's shape: a tensor's declared shape may hold far
    # more elements than the bytes behind it (a view), and the network's shapes bound this pass
    check_finite(state_dict, path)
    return Loaded(net, spec, ckpt)


def check_finite(state_dict, path):
    """Non-finite weights give a black image and a nan PSNR: refuse them up front."""
    for key, value in state_dict.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise CheckpointError(f"{path} holds non-finite weights (nan or inf in '{key}'): it cannot give a meaningful "
                                  "image; use an earlier checkpoint")


def first_difference(held, expected):
    """Where the model spec `held` differs from `expected`, every default spelled out (an
    original checkpoint's terse args equal a config's explicit ones), in words; None if nowhere."""
    def plain(spec):  # tuples and lists alike, as a checkpoint stores them
        return json.loads(json.dumps(registry.with_defaults(spec), sort_keys=True, default=str))

    def walk(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=lambda k: (k != "name", k)):  # another model: say so first
                found = walk(a.get(key), b.get(key), where if key == "args" else where + [key])
                if found:
                    return found
            return None
        if a == b:
            return None
        return f"{'.'.join(where)} is {a!r} in the checkpoint, {b!r} asked for"

    return walk(plain(held), plain(expected), [])


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
