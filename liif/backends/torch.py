"""PyTorch backend: the backend contract (see `liif.backends`) on torch."""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn  # noqa: F401  (part of the contract)

from liif.backends import common as _common
from liif.errors import ConfigError as _ConfigError, FrameworkError as _FrameworkError

name = "torch"
Module = torch.nn.Module


def device(requested="auto"):
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise _FrameworkError(f"device={requested} was asked for, but PyTorch sees no CUDA GPU; use device=cpu or device=auto")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise _ConfigError(f"unknown device '{requested}'; use auto, cpu or cuda")
    return requested


def tensor(array, like=None):
    array = np.ascontiguousarray(array)
    t = torch.from_numpy(array if array.flags.writeable else array.copy())
    return t if like is None else _to_like(t, like)


def to_numpy(t):
    return t.detach().cpu().numpy()


def to_uint8(x):
    """round(clip(x, 0, 1) * 255) as uint8, on x's device; halves round to even, as np.round."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def materialize(t):
    """t, computed (torch is eager: t itself); never waits for the GPU."""
    return t


cat = torch.cat
stack = torch.stack
bmm = torch.bmm


def unfold3x3(feat):
    b, c, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)


def cat_channels_last(tensors):
    # concatenated as (B, h, w, C) rows, then viewed as (B, C, h, w): channels_last memory, no second copy
    return torch.cat([t.permute(0, 2, 3, 1) for t in tensors], -1).permute(0, 3, 1, 2)


def grid_sample_nearest(x, coord, window=None):
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return _nearest_rows(x, coord, window)
    if window is None:
        # grid_sample wants (x, y) = (col, row); its nearest mode rounds half to even.
        out = F.grid_sample(x, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
        return out[:, :, 0, :].permute(0, 2, 1)
    # x is the window (top, left) of an H x W map: grid_sample's own float32 index arithmetic on the
    # whole map's size (round(((c + 1) * size - 1) / 2), halves to even; tests/unit/inference/test_tiled.py checks it
    # against grid_sample, ties included), then the window's offset; outside the window gives 0
    height, width, top, left = window
    b, c, h, w = x.shape
    coord = coord.detach()
    row = torch.round(((coord[:, :, 0] + 1) * height - 1) / 2) - top
    col = torch.round(((coord[:, :, 1] + 1) * width - 1) / 2) - left
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    index = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).long()
    out = x.reshape(b, c, h * w).gather(2, index.unsqueeze(1).expand(b, c, index.shape[1]))
    return out.masked_fill(~inside.unsqueeze(1), 0).permute(0, 2, 1)


def _nearest_rows(x, coord, window):
    """grid_sample_nearest of a channels-last map: each query's C values are one row of the
    (B*h*w, C) view, gathered whole (contiguous output, no strided channel loop, no copy after);
    the pixel index as grid_sample computes it (see above), 0 outside the map."""
    b, c, h, w = x.shape
    height, width, top, left = window if window is not None else (h, w, 0, 0)
    coord = coord.detach()
    row = torch.round(((coord[:, :, 0] + 1) * height - 1) / 2) - top
    col = torch.round(((coord[:, :, 1] + 1) * width - 1) / 2) - left
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    index = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).long()
    index += torch.arange(b, device=index.device).view(b, 1) * (h * w)
    out = x.permute(0, 2, 3, 1).reshape(b * h * w, c).index_select(0, index.view(-1))
    # in place on the gather's own output, not on a view of it (whose gradient would copy it whole)
    return out.masked_fill_(~inside.view(-1, 1), 0).view(b, -1, c)


def grid_sample_bilinear(x, coord, window=None):
    if window is None:
        out = F.grid_sample(x, coord.flip(-1).unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=False)
        return out[:, :, 0, :].permute(0, 2, 1)
    # x is the window (top, left) of an H x W map: grid_sample's own arithmetic on the whole map, then
    # the window's offset. Its kernels (CPU and CUDA) fuse multiply-adds: the source index is
    # fma(c + 1, size / 2, -0.5), clamped to [0, size - 1], and the four corners nw, ne, sw, se are
    # summed in a chain of fmas; each fma is one float64 multiply-add rounded once (bit for bit on
    # grid_sample's CPU kernel, tests/unit/backends/test_contract.py)
    height, width, top, left = window
    b, c, h, w = x.shape
    dtype = x.dtype
    coord = coord.detach()
    row = ((coord[:, :, 0] + 1).double() * (height / 2) - 0.5).to(dtype).clamp(0, height - 1)
    col = ((coord[:, :, 1] + 1).double() * (width / 2) - 0.5).to(dtype).clamp(0, width - 1)
    row0, col0 = row.floor(), col.floor()
    south, east = row - row0, col - col0  # the fractions: the weights of the lower and right neighbours
    north, west = 1 - south, 1 - east
    flat = x.reshape(b, c, h * w)
    out = None
    for dr, dc, weight in ((0, 0, north * west), (0, 1, north * east), (1, 0, south * west), (1, 1, south * east)):
        index = ((row0 + dr - top).clamp(0, h - 1) * w + (col0 + dc - left).clamp(0, w - 1)).long()
        value = flat.gather(2, index.unsqueeze(1).expand(b, c, index.shape[1]))
        if out is None:
            out = value * weight.unsqueeze(1)
        else:
            out = (value.double() * weight.unsqueeze(1).double() + out.double()).to(dtype)
    return out.permute(0, 2, 1)


no_grad = torch.no_grad


def free_device_memory(dev):
    """Bytes free on a CUDA device (the tiled engine's budget is for it), None on the CPU."""
    if str(dev).startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(dev))[0]
    return None


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


def to_device(model, dev):
    return model.to(dev)


def to_dtype(model, dtype):
    """The model's floating-point parameters and buffers in `dtype` ('float32' or 'float64')."""
    return model.to(getattr(torch, _common.check_dtype(dtype)))


def autocast(precision, dev="cpu"):
    """fp32: nothing. bf16: bfloat16 autocast on `dev`'s device type (convolutions and matmuls in
    bfloat16; weights, gradients and optimizer state stay float32, so no loss scaling is needed).
    The value is checked when this is called, so callers can check a config before any work."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(torch.device(dev).type, dtype=torch.bfloat16)
    raise _ConfigError(f"unknown precision '{precision}'; use fp32 or bf16")


def optimize(model, channels_last=False, compile=False):
    """Speed options, in place; state_dict keys and values unchanged (checkpoints are the same).
    channels_last: 4-d weights (the convolutions) in NHWC layout; a convolution with NHWC weights
    runs and returns NHWC whatever its input's layout (cuDNN and oneDNN), so inputs need no change.
    compile: torch.compile the model's two calls, `encode` and `decode` (the decoder contract,
    liif/models/decoder.py); `forward` (training) is these two. Not `nn.Module.compile()` on the
    MLP: LIIF's fast decoding calls its layers one by one, never the MLP module itself."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        for fn in ("encode", "decode"):
            setattr(model, fn, torch.compile(getattr(model, fn)))  # an instance attribute: no new state_dict keys
    return model


def adam(model, lr):
    """Adam over all of model.parameters() (frozen ones included, as the original), torch's formula."""
    return torch.optim.Adam(model.parameters(), lr=lr)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def batch_to_device(batch, like, pin_memory=False):
    """A batch (dict of numpy arrays) as tensors on `like`'s device, ready for `liif.training.step.train_step`. With
    pin_memory and a CUDA device the arrays go through page-locked memory: the copy is then a DMA
    that runs while the GPU computes (from pageable memory CUDA first copies it on the host)."""
    if not (pin_memory and like.is_cuda):
        return {k: tensor(v, like) for k, v in batch.items()}
    return {k: _to_like(torch.from_numpy(np.ascontiguousarray(v)).pin_memory(), like) for k, v in batch.items()}


def device_of(t):
    """The device a tensor is on, as a string ('cpu', 'cuda:0')."""
    return str(t.device)


def scalar(x, like):
    """A Python float as an operand for `like` (torch's arithmetic with Python scalars is already
    the tensor's own)."""
    return x


def zero_grad(optimizer):
    optimizer.zero_grad()


def backward(loss, optimizer):
    """The gradients of `loss` (DDP averages them over the ranks here)."""
    loss.backward()


def step(optimizer):
    optimizer.step()


def optimizer_state_numpy(optimizer):
    """torch's optimizer.state_dict() layout with tensors as numpy (what checkpoints hold)."""
    return _map_tensors(optimizer.state_dict(), lambda t: t.detach().cpu().numpy())


def load_optimizer_state_numpy(optimizer, sd):
    """Each parameter's state (its moments of the parameter's shape, a scalar step) checked, then
    copied into tensors of its own: the optimizer updates them in place, and a checkpoint's arrays
    may be views that share a storage or repeat one element (liif.io.torchfile), as torch.load's
    would. State for no parameter of the groups is dropped (torch's loader would keep it, unused)."""
    optimizer.load_state_dict({"state": {}, "param_groups": sd["param_groups"]})  # torch's check of the groups
    saved_ids = [i for group in sd["param_groups"] for i in group["params"]]
    shapes = dict(zip(saved_ids, (tuple(p.shape) for group in optimizer.param_groups for p in group["params"])))
    state = {}
    for saved_id, st in sd["state"].items():
        if saved_id not in shapes:
            continue
        for key, value in st.items():
            wanted = () if key == "step" else shapes[saved_id]
            if isinstance(value, np.ndarray) and value.shape != wanted and not (key == "step" and value.size == 1):
                raise ValueError(f"optimizer state '{key}' of parameter {saved_id} has shape {value.shape}, "
                                 f"not {wanted}")
        state[saved_id] = _map_tensors(st, lambda a: torch.from_numpy(np.array(a)), np.ndarray)
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def seed(n):
    torch.manual_seed(n)


def set_threads(n):
    if n:
        torch.set_num_threads(int(n))


def distributed_init():
    """Join the process group that `torchrun` or `srun -n N` describes (their variables in the
    environment: see `common.torchrun_world` and `common.slurm_world`, which also say what is a plain
    run): NCCL on CUDA (each process on the GPU of its local rank), else gloo. Returns (rank,
    world_size); (0, 1) for a plain run. Idempotent."""
    import logging
    import os
    import torch.distributed as dist
    if _distributed():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" in os.environ:  # torchrun's variables win: torchrun may run inside a SLURM job
        launched, launcher = _common.torchrun_world(os.environ), "torchrun"
        if launched is not None:
            launched = (*launched, os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    else:
        launched, launcher = _common.slurm_world(os.environ), "srun"
    if launched is None or not dist.is_available():
        return 0, 1
    rank, local_rank, world, address, port = launched
    # said before joining: the join waits for every rank, so a lone process shows here what it waits for
    logging.getLogger(__name__).info("joining %s's process group: rank %d of %d, at %s:%s", launcher, rank, world,
                                     address, port)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # "cuda" now means this rank's GPU
    kind = "nccl" if torch.cuda.is_available() else "gloo"
    if launcher == "torchrun":  # env://: joins the store torchrun's agent already serves at MASTER_PORT
        dist.init_process_group(kind)
    else:
        dist.init_process_group(kind, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world)
    return dist.get_rank(), dist.get_world_size()


def wrap_distributed(model):
    """The model DistributedDataParallel-wrapped (gradients averaged over the ranks in
    backward); the model itself when not distributed. Save and evaluate the unwrapped one."""
    if not _distributed() or torch.distributed.get_world_size() == 1:
        return model
    p = next(iter(model.parameters()))
    ids = [p.device.index if p.device.index is not None else torch.cuda.current_device()] if p.is_cuda else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_mean(x):
    """The mean of a float over the ranks (x itself when not distributed)."""
    if not _distributed():
        return float(x)
    import torch.distributed as dist
    t = torch.tensor([float(x)], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def barrier():
    if _distributed():
        torch.distributed.barrier()


def distributed_close():
    """Leave the process group (no-op when not distributed)."""
    if _distributed():
        torch.distributed.destroy_process_group()


def is_internal_failure(error):
    """False: PyTorch reports its failures as ordinary exceptions, each a bug or the input's fault."""
    return False


def _distributed():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _to_like(t, like):
    """t on `like`'s device; float data in the model's float type (float32, or float64 for numerical
    checks), but not in autocast's bfloat16 activations: coordinates stay float32.
    non_blocking: a copy to the GPU does not wait for the GPU's queued work (torch's blocking copy
    synchronises the stream). Safe from pageable memory: CUDA stages the array before returning."""
    dtype = like.dtype if t.is_floating_point() and like.dtype in (torch.float32, torch.float64) else None
    return t.to(like.device, dtype, non_blocking=True)


def _map_tensors(obj, fn, kind=torch.Tensor):
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, kind) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn, kind) for v in obj)
    return obj
