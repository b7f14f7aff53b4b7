"""PyTorch backend: the backend contract (see `liif.backends`) on torch."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn  # noqa: F401  (part of the contract)

from liif.backends import common as _common

name = "torch"
Module = torch.nn.Module


def device(requested="auto"):
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={requested} was asked for, but PyTorch sees no CUDA GPU; use device=cpu or device=auto")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ValueError(f"unknown device '{requested}'; use auto, cpu or cuda")
    return requested


def tensor(array, like=None):
    array = np.ascontiguousarray(array)
    t = torch.from_numpy(array if array.flags.writeable else array.copy())
    return t if like is None else t.to(like.device)


def to_numpy(t):
    return t.detach().cpu().numpy()


cat = torch.cat
stack = torch.stack
bmm = torch.bmm


def unfold3x3(feat):
    b, c, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)


def grid_sample_nearest(x, coord):
    # grid_sample wants (x, y) = (col, row); its nearest mode rounds half to even.
    out = F.grid_sample(x, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    return out[:, :, 0, :].permute(0, 2, 1)


no_grad = torch.no_grad


def frozen(module):
    for p in module.parameters():
        p.requires_grad = False
    return module


def set_parameter(p, array):
    with torch.no_grad():
        p.copy_(torch.from_numpy(np.asarray(array, dtype=np.float32)))


def state_dict_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state_dict_numpy(model, sd):
    own = model.state_dict()
    _common.check_state_dict({k: v.shape for k, v in own.items()}, sd)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, strict=True)


def load_file(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return _map_tensors(obj, lambda t: t.numpy())


def save_file(obj, path):
    torch.save(_map_tensors(obj, lambda a: torch.from_numpy(np.ascontiguousarray(a)), np.ndarray), path)


def to_device(model, dev):
    return model.to(dev)


def adam(model, lr):
    """Adam over all of model.parameters() (frozen ones included, as the original), torch's formula."""
    return torch.optim.Adam(model.parameters(), lr=lr)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(model, optimizer, batch):
    """One L1 step on a batch of normalised numpy arrays (inp, coord, cell, gt); returns the loss."""
    like = next(iter(model.parameters()))
    inp, coord, cell, gt = (tensor(batch[k], like) for k in ("inp", "coord", "cell", "gt"))
    loss = (model(inp, coord, cell) - gt).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def optimizer_state_numpy(optimizer):
    """torch's optimizer.state_dict() layout with tensors as numpy (what checkpoints hold)."""
    return _map_tensors(optimizer.state_dict(), lambda t: t.detach().cpu().numpy())


def load_optimizer_state_numpy(optimizer, sd):
    optimizer.load_state_dict(_map_tensors(sd, lambda a: torch.from_numpy(np.asarray(a)), np.ndarray))


def seed(n):
    torch.manual_seed(n)


def set_threads(n):
    if n:
        torch.set_num_threads(int(n))


def _map_tensors(obj, fn, kind=torch.Tensor):
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, kind) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn, kind) for v in obj)
    return obj
