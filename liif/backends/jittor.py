"""Jittor backend: the backend contract (see `liif.backends`) on Jittor 1.3.11.

Same public names, in the same order, as `liif.backends.torch`. Where Jittor's own
behaviour differs from PyTorch's, this module follows PyTorch (docs/jittor.md lists them):
- `Module.__call__` runs `forward` (Jittor calls `execute`); `eval()`/`train()` only set the
  mode and never switch gradients off (Jittor's own `eval()` stops every parameter's grad);
- `unfold3x3` is pad + 9 slices (`jt.nn.unfold` compiles a new kernel per feature-map size);
- `grid_sample_nearest` rounds exact halves to even, as torch (Jittor rounds them away from 0);
- `adam` uses torch's Adam formula and counts one step per optimizer step (Jittor's Adam
  scales eps differently and counts backward calls); its state_dict has torch's layout;
- `load_state_dict_numpy` is strict (Jittor's loader only logs mismatches);
Jittor chooses the device globally (`jt.flags.use_cuda`), not per tensor.
Multi-process training is MPI, Jittor's own launcher (`mpirun -np N python run.py framework=jittor
...`, the counterpart of torchrun): the trainer shards each global batch by rank, and Jittor's
optimizer averages the gradients over the ranks.
"""
import contextlib
import math
import types

import numpy as np

from liif.backends import jittor_setup as _setup
from liif.backends import common as _common
from liif.errors import ConfigError as _ConfigError, FrameworkError as _FrameworkError

jt = _setup.import_jittor()

nn = types.ModuleType(__name__ + ".nn", "torch.nn's layer classes (the ones LIIF uses), on Jittor")

name = "jittor"


class Module(jt.nn.Module):
    """jt.nn.Module with torch's conventions: calling it runs `forward`; eval/train keep gradients."""

    def execute(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode=True):
        for m in self.modules():
            m.is_train = bool(mode)
        return self

    def eval(self):
        return self.train(False)


class _Conv2d(jt.nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode='{padding_mode}' is not supported on jittor (only 'zeros')")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


class _ReLU(jt.nn.ReLU):
    def __init__(self, inplace=False):
        super().__init__()


nn.Conv2d = _Conv2d
nn.Linear = jt.nn.Linear                # (in_features, out_features, bias=True), as torch
nn.ReLU = _ReLU
nn.Sequential = jt.nn.Sequential
nn.ModuleList = jt.nn.ModuleList        # an alias of Sequential in jittor; same state_dict names
nn.PixelShuffle = jt.nn.PixelShuffle    # (upscale_factor), same channel order as torch


def device(requested="auto"):
    if requested in (None, "auto"):
        return "cuda" if jt.has_cuda else "cpu"
    if requested.startswith("cuda") and not jt.has_cuda:
        raise _FrameworkError(f"device={requested} was asked for, but Jittor has no CUDA (no GPU found, or jittor was "
                           "set up without CUDA: nvcc_path is empty); use device=cpu or device=auto")
    if requested not in ("cpu", "cuda", "cuda:0"):
        if requested.startswith("cuda"):
            raise _ConfigError(f"jittor uses one GPU per process; use device=cuda, not '{requested}' (pick it with CUDA_VISIBLE_DEVICES)")
        raise _ConfigError(f"unknown device '{requested}'; use auto, cpu or cuda")
    return "cuda" if requested.startswith("cuda") else "cpu"


def tensor(array, like=None):
    # jittor's device is global; `like` gives the float type. By default jittor stores
    # float64 arrays as float32 (and int64 as int32), so float64 is asked for explicitly.
    array = np.ascontiguousarray(array)
    if like is not None and like.dtype == jt.float64 and array.dtype.kind == "f":
        return _var(array, "float64")
    return jt.array(array)


def to_numpy(t):
    return t.numpy()


def to_uint8(x):
    """round(clip(x, 0, 1) * 255) as uint8; halves round to even, as np.round (jittor's round does not)."""
    return _round_half_even(x.clamp(0, 1) * 255).uint8()


def materialize(t):
    """t, computed now without waiting for the GPU: jittor is lazy, and a loop that keeps its results
    (chunked decoding) would otherwise build one graph of every iteration, run at the final copy."""
    return t.sync(device_sync=False)


def cat(tensors, dim=0):
    return jt.concat(list(tensors), dim)


def stack(tensors, dim=0):
    return jt.stack(list(tensors), dim)


def bmm(a, b):
    return jt.nn.bmm(a, b)


def unfold3x3(feat):
    # F.unfold(feat, 3, padding=1) without jt.nn.unfold (which recompiles for every h, w):
    # channel 9c + k holds neighbour k = 3*di + dj of channel c
    b, c, h, w = feat.shape
    padded = jt.nn.pad(feat, [1, 1, 1, 1])
    taps = [padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)]
    return jt.stack(taps, 2).reshape(b, c * 9, h, w)


def cat_channels_last(tensors):
    return jt.concat(list(tensors), 1)  # Jittor fuses a lookup's reindex with what reads it: no layout to choose


def grid_sample_nearest(x, coord, window=None):
    # torch's grid_sample(mode="nearest", align_corners=False, padding_mode="zeros"): the pixel index
    # is round(((c + 1) * size - 1) / 2) in float32 with exact halves rounded to even
    # (jittor's own grid_sample rounds them away from zero); outside the map gives 0.
    # With a window (H, W, top, left), x is that window of an H x W map: the index is the whole
    # map's, minus the offset.
    b, c, h, w = x.shape
    height, width, top, left = window if window is not None else (h, w, 0, 0)
    q = coord.shape[1]
    coord = coord.stop_grad()  # torch's nearest mode has no gradient w.r.t. the grid either
    row = _round_half_even(((coord[:, :, 0] + 1) * height - 1) / 2)
    col = _round_half_even(((coord[:, :, 1] + 1) * width - 1) / 2)
    if top or left:
        row, col = row - top, col - left
    return x.reindex([b, q, c], ["i0", "i2", "@e0(i0,i1)", "@e1(i0,i1)"], overflow_value=0, extras=[row, col])


def grid_sample_bilinear(x, coord, window=None):
    # torch's grid_sample(mode="bilinear", padding_mode="border", align_corners=False) as its kernels
    # compute it, fused multiply-adds included (see liif.backends.torch): the source index
    # fma(c + 1, size / 2, -0.5) clamped to [0, size - 1], the corners nw, ne, sw, se summed in a
    # chain of fmas, each one float64 multiply-add rounded once. With a window (H, W, top, left), on the
    # whole H x W map's geometry, then the window's offset.
    b, c, h, w = x.shape
    height, width, top, left = window if window is not None else (h, w, 0, 0)
    q = coord.shape[1]
    dtype = x.dtype
    coord = coord.stop_grad()
    row = ((coord[:, :, 0] + 1).float64() * (height / 2) - 0.5).cast(dtype).clamp(0, height - 1)
    col = ((coord[:, :, 1] + 1).float64() * (width / 2) - 0.5).cast(dtype).clamp(0, width - 1)
    row0, col0 = row.floor(), col.floor()
    south, east = row - row0, col - col0  # the fractions: the weights of the lower and right neighbours
    north, west = 1 - south, 1 - east
    out = None
    for dr, dc, weight in ((0, 0, north * west), (0, 1, north * east), (1, 0, south * west), (1, 1, south * east)):
        r = (row0 + (dr - top)).int32().clamp(0, h - 1)
        k = (col0 + (dc - left)).int32().clamp(0, w - 1)
        value = x.reindex([b, q, c], ["i0", "i2", "@e0(i0,i1)", "@e1(i0,i1)"], extras=[r, k])
        if out is None:
            out = value * weight.unsqueeze(-1)
        else:
            out = (value.float64() * weight.unsqueeze(-1).float64() + out.float64()).cast(dtype)
    return out


no_grad = jt.no_grad


def free_device_memory(dev):
    """None: the tiled engine then budgets host memory (Jittor has no per-device free-memory query
    that does not allocate; on a GPU give max_memory explicitly)."""
    return None


def frozen(module):
    for p in module.parameters():
        p.requires_grad = False
    return module


def set_parameter(p, array):
    array = np.asarray(array)
    if tuple(p.shape) != array.shape:
        raise ValueError(f"shape mismatch: parameter {tuple(p.shape)}, array {array.shape}")
    p.update(_var(array, p.dtype))


def state_dict_numpy(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def load_state_dict_numpy(model, sd):
    own = model.state_dict()
    _common.check_state_dict({k: v.shape for k, v in own.items()}, sd)
    for k, v in own.items():
        v.update(_var(sd[k], v.dtype))
    jt.sync(list(own.values()))


def to_device(model, dev):
    jt.flags.use_cuda = int(str(dev).startswith("cuda"))
    return model


def to_dtype(model, dtype):
    """The model's floating-point parameters in `dtype` ('float32' or 'float64').
    Jittor's float64 convolutions and matmuls have no oneDNN path: ~10-100x slower on CPU."""
    return model.float64() if _common.check_dtype(dtype) == "float64" else model.float32()


def autocast(precision, dev="cpu"):
    """float32 only here: bf16 autocast is a PyTorch option."""
    if precision != "fp32":
        raise _ConfigError(f"framework=jittor runs in float32 only, not precision '{precision}' (bf16 autocast is a "
                         "PyTorch option): set framework.precision=fp32 framework.infer_precision=fp32, or use framework=torch")
    return contextlib.nullcontext()


def optimize(model, channels_last=False, compile=False):
    """No speed options here: channels_last and compile are PyTorch ones."""
    if channels_last or compile:
        raise _ConfigError("framework=jittor has no channels_last or compile option (PyTorch ones): set "
                         "framework.channels_last=false framework.compile=false, or use framework=torch")
    return model


def adam(model, lr):
    """Adam over all of model.parameters() (frozen ones included, as the original), torch's formula."""
    return _TorchAdam(model.parameters(), lr=lr)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def batch_to_device(batch, like=None, pin_memory=False):
    """The batch as float32 numpy: jittor copies it to the device when the step runs (`liif.training.step`
    makes the Vars), and making Vars
    off the main thread (prefetching) is not known to be safe. pin_memory is a PyTorch option."""
    return {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()}


def device_of(t):
    """The device of every Var: jittor chooses it globally."""
    return "cuda" if jt.flags.use_cuda else "cpu"


def scalar(x, like):
    """A Python float as an operand for `like`: jittor rounds Python floats to float32 constants,
    which is torch's arithmetic for float32 Vars but not for float64 ones."""
    return _var([x], "float64") if like.dtype == jt.float64 else x


def zero_grad(optimizer):
    optimizer.zero_grad()


def backward(loss, optimizer):
    """The gradients of `loss`, held by the optimizer (Jittor's Optimizer.backward; under MPI it
    averages them over the ranks)."""
    optimizer.backward(loss)


def step(optimizer):
    optimizer.step()
    if jt.in_mpi:
        # Jittor is lazy: run the update, with its gradient all-reduces, now on every rank. Left
        # pending, the next sync would run them, and on rank 0 that can be a rank-0-only
        # validation while the other ranks wait in a barrier: a deadlock (seen).
        jt.sync_all()


def optimizer_state_numpy(optimizer):
    """torch's optimizer.state_dict() layout with tensors as numpy (what checkpoints hold)."""
    return optimizer.state_dict_numpy()


def load_optimizer_state_numpy(optimizer, sd):
    optimizer.load_state_dict_numpy(sd)
    # materialise the loaded moments now (as load_state_dict_numpy does the weights), so that the
    # first step after a resume runs the same kernels as any other step
    jt.sync([v for st in optimizer.state if st is not None for v in (st["exp_avg"], st["exp_avg_sq"])])


def seed(n):
    jt.set_seed(n)


def set_threads(n):
    # jittor's CPU convs and matmuls run in oneDNN, built with OpenMP (libgomp, loaded by jittor)
    if n:
        import ctypes.util
        lib = ctypes.util.find_library("gomp")
        if lib:
            ctypes.CDLL(lib).omp_set_num_threads(int(n))


def distributed_init():
    """(rank, world_size) when launched by `mpirun -np N` (Jittor's multi-process launcher), else
    (0, 1). Jittor joins MPI when it is imported (jt.in_mpi, jt.rank, jt.world_size, read from
    OpenMPI's environment; jittor_setup turns use_mpi on there), so there is nothing to start.
    Started by `srun -n N` without MPI, the N processes would each train alone into the same folder:
    a FrameworkError says how to start them."""
    import os
    if not jt.in_mpi and _common.slurm_world(os.environ) is not None:
        raise _FrameworkError("this process is one of several tasks of srun, but Jittor's processes form a group "
                             "only under MPI: inside the allocation, start them with mpirun -np N python run.py "
                             "framework=jittor ... (or srun -n 1 for one process; framework=torch runs under srun)")
    return (jt.rank, jt.world_size) if jt.in_mpi else (0, 1)


def wrap_distributed(model):
    """The model itself, with rank 0's parameters on every rank. No wrapper is needed: under MPI,
    Jittor's Optimizer.backward (which `adam`'s step runs) averages each gradient over the ranks."""
    if jt.in_mpi:
        model.mpi_param_broadcast(0)
        jt.sync_all()  # now, on every rank (see step)
    return model


def all_reduce_mean(x):
    """The mean of a float over the ranks (x itself when not distributed)."""
    if not jt.in_mpi:
        return float(x)
    total = _var([float(x)], "float64")
    return float(total.mpi_all_reduce("add").item()) / jt.world_size


def barrier():
    if jt.in_mpi:
        jt.sync_all()  # pending lazy work first: it may hold collectives the other ranks wait for
        jt.mpi.mpi_barrier()


def distributed_close():
    """Nothing to do: Jittor leaves MPI (MPI_Finalize) when the process exits."""


is_internal_failure = _setup.is_internal_failure  # a failed check in Jittor's C++ core (jittor_setup.py)


# --- helpers -------------------------------------------------------------------------------

def _var(array, dtype):
    """A Var of exactly `dtype` (jittor's own jt.array turns float64 arrays into float32)."""
    return jt.array(np.asarray(array, dtype=str(dtype)), dtype=str(dtype))


def _round_half_even(u):
    """float32 Var -> int32 Var, rounding exact halves to the even integer (C's nearbyint)."""
    f = u.floor()
    frac = u - f  # exact in float32
    odd = (f - (f * 0.5).floor() * 2) == 1
    up = (frac > 0.5).logical_or((frac == 0.5).logical_and(odd))
    return (f + up.float32()).int32()


class _TorchAdam(jt.optim.Optimizer):
    """torch.optim.Adam (amsgrad=False, maximize=False) on jittor, update for update.

    torch: m = lerp(m, g, 1-b1); v = v*b2 + (1-b2)*g*g; p += -(lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps),
    with bc_i = 1 - b_i**step and `step` counted per parameter, per optimizer step. Jittor's own Adam
    folds sqrt(bc2) into the step size (its eps is effectively eps/sqrt(bc2)) and counts backward calls.
    Parameters that do not require grad are skipped and get no state, as torch's (grad is None).
    Under MPI, `pre_step` (Jittor's Optimizer.backward) has already averaged each gradient over the
    ranks (and broadcast rank 0's parameters at the first step), so the update needs no reduction.
    """

    GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
                  "differentiable", "fused", "decoupled_weight_decay")  # torch 2.13's Adam param_group

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(list(params), lr)
        for group in self.param_groups:
            group.setdefault("lr", lr)
            group.setdefault("betas", tuple(betas))
            group.setdefault("eps", eps)
            group.setdefault("weight_decay", weight_decay)
        self.state = [None] * sum(len(g["params"]) for g in self.param_groups)

    def step(self, loss=None, retain_graph=False):
        self.pre_step(loss, retain_graph)  # backward: fills group["grads"]
        index = 0
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p, g in zip(group["params"], group["grads"]):
                i, index = index, index + 1
                if p.is_stop_grad():
                    continue
                st = self.state[i]
                if st is None:
                    st = self.state[i] = {"step": 0.0, "exp_avg": jt.zeros(p.shape, p.dtype).stop_grad(),
                                          "exp_avg_sq": jt.zeros(p.shape, p.dtype).stop_grad()}
                st["step"] += 1
                c = lambda x: scalar(x, p)  # noqa: E731
                if wd != 0:
                    g = g + p * c(wd)
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.update(m + (g - m) * c(1 - b1))          # torch: exp_avg.lerp_(grad, 1 - beta1)
                v.update(v * c(b2) + g * c(1 - b2) * g)    # torch: exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
                step_size = lr / (1 - b1 ** st["step"])
                denom = v.sqrt() / c(math.sqrt(1 - b2 ** st["step"])) + c(eps)
                p.update(p + m * c(-step_size) / denom)    # torch: param.addcdiv_(exp_avg, denom, value=-step_size)
        self.post_step()

    def state_dict_numpy(self):
        state = {i: {"step": np.array(st["step"], dtype=np.float32), "exp_avg": st["exp_avg"].numpy(),
                     "exp_avg_sq": st["exp_avg_sq"].numpy()}
                 for i, st in enumerate(self.state) if st is not None}
        groups, start = [], 0
        for group in self.param_groups:
            out = {"lr": group["lr"], "betas": tuple(group["betas"]), "eps": group["eps"],
                   "weight_decay": group["weight_decay"], "amsgrad": False, "maximize": False, "foreach": None,
                   "capturable": False, "differentiable": False, "fused": None, "decoupled_weight_decay": False}
            out["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(out)
        return {"state": state, "param_groups": groups}

    def load_state_dict_numpy(self, sd):
        saved_groups = sd["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(a["params"]) != len(b["params"]) for a, b in zip(saved_groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of optimizer's group")
        for saved in saved_groups:
            for key in ("amsgrad", "maximize", "capturable", "differentiable"):
                if saved.get(key):
                    raise ValueError(f"optimizer state has {key}=True, which the jittor Adam does not support")
        index_of, params, start = {}, [], 0
        for saved, group in zip(saved_groups, self.param_groups):
            for j, saved_id in enumerate(saved["params"]):
                index_of[saved_id] = start + j
            params += list(group["params"])
            start += len(group["params"])
        state = [None] * len(params)
        for saved_id, st in sd["state"].items():
            if saved_id not in index_of:
                raise ValueError(f"optimizer state for parameter {saved_id}, which no parameter group lists")
            i = index_of[saved_id]
            shape = tuple(params[i].shape)
            for key in ("exp_avg", "exp_avg_sq"):
                if np.shape(st[key]) != shape:
                    raise ValueError(f"optimizer state '{key}' of parameter {saved_id} has shape "
                                     f"{np.shape(st[key])}, the parameter {shape}")
            state[i] = {"step": float(np.asarray(st["step"])),
                        "exp_avg": _var(st["exp_avg"], params[i].dtype).stop_grad(),
                        "exp_avg_sq": _var(st["exp_avg_sq"], params[i].dtype).stop_grad()}
        for saved, group in zip(saved_groups, self.param_groups):
            for key in ("lr", "betas", "eps", "weight_decay"):
                if key in saved:
                    group[key] = tuple(saved[key]) if key == "betas" else saved[key]
        self.state = state
