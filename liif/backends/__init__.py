"""Framework backends. Everything framework-specific lives in this package.

`get(name)` returns a module that exports the *backend contract*; both
`torch.py` and `jittor.py` define the same public names, in the same order:

  name, Module, nn (Conv2d, Linear, ReLU, Sequential, ModuleList, PixelShuffle)
  device(name)                -> the resolved device string ('cpu' / 'cuda')
  tensor(array, like=None)    numpy -> framework tensor (on `like`'s device, without waiting for the GPU)
  to_numpy(t)                 framework tensor -> numpy
  to_uint8(x)                 round(clip(x, 0, 1) * 255) as a uint8 tensor, halves to even (np.round)
  materialize(t) -> t         computed now (a lazy framework would defer it), without waiting for the GPU
  cat, stack, bmm             as in torch
  unfold3x3(feat)             (B,C,h,w) -> (B,9C,h,w), torch's F.unfold channel order, zero pad
  grid_sample_nearest(x, coord, window=None)   x (B,C,h,w), coord (B,Q,2) as (row, col) -> (B,Q,C),
                              torch's nearest grid_sample, align_corners=False, zero padding;
                              window (H, W, top, left): x is that part of an H x W map (liif/inference/tiled.py)
  no_grad()                   context manager
  free_device_memory(dev)     bytes free on a GPU device, None on the CPU (the tiled engine's budget)
  frozen(module)              mark a module's parameters as not trainable
  set_parameter(p, array)     copy a numpy array into a parameter
  state_dict_numpy(model)     {name: numpy}
  load_state_dict_numpy(model, sd)   strict: raises on missing, unexpected or mis-shaped keys
  to_device(model, device)    move a model
  to_dtype(model, dtype)      float32 (default) or float64 parameters; tensor() follows `like`'s float type
  autocast(precision, dev)    context manager: 'fp32' nothing, 'bf16' bfloat16 autocast (torch only);
                              raises on an unsupported value when called
  optimize(model, channels_last=False, compile=False) -> model   speed options in place, same state_dict
                              (torch only; the other backend raises on non-defaults)
  adam(model, lr)             Adam with torch's update formula over model.parameters()
  set_lr(optimizer, lr)       the schedule itself is framework-neutral (liif.training.schedule)
  batch_to_device(batch, like, pin_memory=False)   a dict of numpy arrays made ready for a training step
                              (torch: tensors on like's device, via pinned memory on CUDA if asked)
  device_of(t)                the device string of a tensor (for autocast)
  scalar(x, like)             a Python float as an operand for `like` (jittor: float64 for float64 Vars)
  zero_grad(opt) / backward(loss, opt) / step(opt)   the gradient step's primitives; the loss and the
                              order of the step are framework-neutral (`liif.training.step.train_step`)
  optimizer_state_numpy(opt) / load_optimizer_state_numpy(opt, sd)   torch's state_dict layout
  seed(n)                     seed the framework's own RNG
  set_threads(n)              CPU threads (None/0: leave the framework's default)
  distributed_init() -> (rank, world_size)   join the launcher's processes (torch: torchrun,
                              jittor: mpirun); (0, 1) if not launched by one
  wrap_distributed(model)     the model for training steps, whose optimizer step then averages the
                              gradients over the ranks (torch: DDP-wrapped; jittor: the model itself,
                              Jittor's optimizer reduces); the model itself if not distributed
  all_reduce_mean(x) -> float the mean of a float over the ranks
  barrier()                   wait for every rank
  distributed_close()         leave the process group
  is_internal_failure(error)  True if `error` is the framework's own internal failure (jittor: a failed
                              check in its C++ core), which a second run of the same command avoids

Besides `get(name)`, the package offers `version(name)`: the framework's version, for the run's
record (liif/run/rundir.py), without building a backend.

Tensors themselves offer the methods listed in `liif.backends.contract.Tensor` (the surface
framework-neutral code may use); `tests/test_backend_contract.py` checks both backends against it.

No module-level "current backend": a Hydra multirun may run torch and jittor jobs in
one process, so the backend is passed explicitly.
"""
import importlib
import sys

from liif.errors import ConfigError, FrameworkError

FRAMEWORKS = ("torch", "jittor")


def get(name):
    if name not in FRAMEWORKS:
        raise ConfigError(f"unknown framework '{name}'; choose one of: {', '.join(FRAMEWORKS)}")
    try:
        return importlib.import_module(f"liif.backends.{name}")
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise FrameworkError(f"framework '{name}' is not installed: pip install -e '.[{name}]'") from None


def is_internal_failure(name, error):
    """Whether `error` is framework `name`'s own internal failure (`is_internal_failure` of the
    contract), asked of its backend if this process loaded it: a framework never loaded has not
    failed, and is not loaded just to ask."""
    backend = sys.modules.get(f"liif.backends.{name}")
    return backend is not None and backend.is_internal_failure(error)


def version(name):
    """The installed version of framework `name`, or None when it cannot be imported here. Jittor is
    imported through its setup (`jittor_setup.import_jittor`): a bare `import jittor` builds another
    kernel cache."""
    if name not in FRAMEWORKS:
        raise ConfigError(f"unknown framework '{name}'; choose one of: {', '.join(FRAMEWORKS)}")
    try:
        if name == "jittor":
            from liif.backends.jittor_setup import import_jittor
            module = import_jittor()
        else:
            module = importlib.import_module(name)
    except (ImportError, FrameworkError):  # not installed, or Jittor cannot start here
        return None
    return str(module.__version__)
