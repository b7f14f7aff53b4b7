"""The backend contract: what framework-neutral code (models, `liif.inference`, `liif.training`) may use.

`Backend` lists the names every backend module (liif/backends/torch.py, jittor.py) exports, in
the order they define them; `liif.backends.get(name)` returns such a module. `Tensor` is the
surface of a backend's tensors (torch.Tensor, jittor.Var): at least these attributes and
methods, with torch's meaning; anything else a model needs goes through the backend module
(`backend.cat`, `backend.grid_sample_nearest` ...). `tests/unit/backends/test_contract.py` checks each
backend's names against `Backend` and its tensors against `Tensor`, method by method, against NumPy;
the type check (mypy, tests/project/test_typecheck.py) checks both modules' signatures against `Backend`.

Models, optimizers and layers stay `Any` here: their types are the framework's own, which the
framework-neutral code never names.
"""
import builtins
import inspect
from contextlib import AbstractContextManager
from typing import Any, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Tensor(Protocol):
    shape: Sequence[int]  # `n, c, h, w = x.shape`, `x.shape[:2]`
    dtype: Any            # compared between tensors (`pred.dtype != gt.dtype`), never inspected

    # indexing: basic slices and integers; assignment writes in place (`out[:, a:b] = pred`,
    # `coord_[:, :, 0] += shift`: __getitem__ then an in-place op then __setitem__)
    def __getitem__(self, index: Any) -> "Tensor": ...
    def __setitem__(self, index: Any, value: Any) -> None: ...

    # elementwise arithmetic with tensors (broadcasting as NumPy) and Python numbers
    def __add__(self, other: Any) -> "Tensor": ...
    def __radd__(self, other: Any) -> "Tensor": ...      # `0 + pred` (the ensemble's running sum starts at 0)
    def __sub__(self, other: Any) -> "Tensor": ...
    def __mul__(self, other: Any) -> "Tensor": ...
    def __rmul__(self, other: Any) -> "Tensor": ...
    def __truediv__(self, other: Any) -> "Tensor": ...
    def __iadd__(self, other: Any) -> "Tensor": ...
    def __isub__(self, other: Any) -> "Tensor": ...
    def __imul__(self, other: Any) -> "Tensor": ...
    def __matmul__(self, other: Any) -> "Tensor": ...    # batched matrix product over the last two dimensions

    # new tensors
    def clone(self) -> "Tensor": ...                     # a copy: in-place edits of it leave the source alone
    def clamp(self, min: builtins.float, max: builtins.float) -> "Tensor": ...
    def abs(self) -> "Tensor": ...
    def cos(self) -> "Tensor": ...                       # elementwise, radians (LTE's Fourier basis)
    def sin(self) -> "Tensor": ...
    def sum(self, dim: int) -> "Tensor": ...
    def mean(self) -> "Tensor": ...                      # over every element
    def float(self) -> "Tensor": ...                     # float32 (undoes an autocast's bfloat16)

    # shapes (views where torch gives views)
    def view(self, *shape: int) -> "Tensor": ...         # one -1 allowed; needs a contiguous tensor
    def reshape(self, *shape: int) -> "Tensor": ...
    def permute(self, *dims: int) -> "Tensor": ...
    def unsqueeze(self, dim: int) -> "Tensor": ...
    def contiguous(self) -> "Tensor": ...
    def split(self, sizes: List[int], dim: int) -> Tuple["Tensor", ...]: ...  # consecutive parts of these sizes

    # out of the framework
    def item(self) -> builtins.float: ...                # a one-element tensor as a Python number


class Backend(Protocol):
    """A backend module, as `liif.backends.get(name)` returns it; code that uses one takes it as
    an argument named `backend` (see `liif.backends`: there is no current backend)."""

    nn: Any       # torch.nn's layer classes that LIIF uses: Conv2d, Linear, ReLU, Sequential, ModuleList, PixelShuffle
    name: str     # 'torch' or 'jittor'
    Module: Any   # the base class of every network (torch.nn.Module; on Jittor, one with torch's conventions)

    def device(self, requested: Optional[str] = "auto") -> str:
        """The resolved device string ('cpu', 'cuda', 'cuda:1'); 'auto' (or None): a GPU if there is one."""
    def tensor(self, array: npt.ArrayLike, like: Optional[Tensor] = None) -> Tensor:
        """NumPy -> a tensor on `like`'s device, in its float type (without waiting for the GPU)."""
    def to_numpy(self, t: Tensor) -> np.ndarray:
        """A tensor -> NumPy."""
    def to_uint8(self, x: Tensor) -> Tensor:
        """round(clip(x, 0, 1) * 255) as a uint8 tensor, halves to even (as np.round)."""
    def materialize(self, t: Tensor) -> Tensor:
        """`t` computed now (a lazy framework would defer it), without waiting for the GPU."""
    def cat(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        """As torch.cat."""
    def stack(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        """As torch.stack."""
    def bmm(self, a: Tensor, b: Tensor) -> Tensor:
        """As torch.bmm."""
    def unfold3x3(self, feat: Tensor) -> Tensor:
        """(B,C,h,w) -> (B,9C,h,w), in torch's F.unfold channel order, zero padded."""
    def cat_channels_last(self, tensors: Sequence[Tensor]) -> Tensor:
        """Maps (B,Ci,h,w) concatenated along the channels, (B,sum Ci,h,w), laid out so that
        `grid_sample_nearest` reads each pixel's channels as one row (torch: channels_last memory,
        written once; Jittor fuses its lookups: `cat`). For a map of many channels looked up many
        times (LTE's table)."""
    def grid_sample_nearest(self, x: Tensor, coord: Tensor,
                            window: Optional[Tuple[int, int, int, int]] = None) -> Tensor:
        """x (B,C,h,w) sampled at coord (B,Q,2), as (row, col), -> (B,Q,C): torch's nearest
        grid_sample with align_corners=False and zero padding. window (H, W, top, left): x is that
        part of an H x W map (liif/inference/tiled.py)."""
    def grid_sample_bilinear(self, x: Tensor, coord: Tensor,
                             window: Optional[Tuple[int, int, int, int]] = None) -> Tensor:
        """x (B,C,h,w) sampled at coord (B,Q,2), as (row, col), -> (B,Q,C): torch's bilinear
        grid_sample with align_corners=False and padding_mode='border'. window (H, W, top, left):
        x is that part of an H x W map, sampled with the whole map's geometry (clamped at its
        border); the caller keeps each query's four neighbours inside the window. Gradients
        flow to `x` (a gradient to `coord` is not part of the contract)."""
    def no_grad(self) -> AbstractContextManager[Any]:
        """A context without gradients."""
    def free_device_memory(self, dev: str) -> Optional[int]:
        """Bytes free on a GPU device, None on the CPU (the tiled engine's budget)."""
    def frozen(self, module: Any) -> Any:
        """`module`, its parameters marked as not trainable."""
    def set_parameter(self, p: Any, array: npt.ArrayLike) -> None:
        """Copy a NumPy array into a parameter."""
    def state_dict_numpy(self, model: Any) -> dict:
        """{name: NumPy array} of the model's parameters and buffers."""
    def load_state_dict_numpy(self, model: Any, sd: Mapping[str, Any]) -> None:
        """Strict: raises ValueError on missing, unexpected or mis-shaped keys."""
    def to_device(self, model: Any, dev: str) -> Any:
        """The model on `dev`."""
    def to_dtype(self, model: Any, dtype: str) -> Any:
        """The model's float parameters in 'float32' or 'float64' (`tensor` follows `like`'s float type)."""
    def autocast(self, precision: str, dev: str = "cpu") -> AbstractContextManager[Any]:
        """'fp32': nothing; 'bf16': bfloat16 autocast (torch only). Raises on an unsupported
        value when called, so a config can be checked before any work."""
    def optimize(self, model: Any, channels_last: bool = False, compile: bool = False) -> Any:
        """Speed options in place, the same state_dict (torch only; the other backend raises on non-defaults)."""
    def adam(self, model: Any, lr: float) -> Any:
        """Adam with torch's update formula over model.parameters()."""
    def set_lr(self, optimizer: Any, lr: float) -> None:
        """The learning rate of every group (the schedule itself is liif.training.schedule)."""
    def batch_to_device(self, batch: Mapping[str, np.ndarray], like: Any,
                        pin_memory: bool = False) -> dict:
        """A dict of NumPy arrays made ready for a training step (torch: tensors on `like`'s
        device, via pinned memory on CUDA if asked)."""
    def device_of(self, t: Tensor) -> str:
        """The device string of a tensor (for autocast)."""
    def scalar(self, x: float, like: Tensor) -> Any:
        """A Python float as an operand for `like` (jittor: float64 for float64 Vars)."""
    def zero_grad(self, optimizer: Any) -> None:
        """Clear the gradients (the order of a step is liif.training.step.train_step's)."""
    def backward(self, loss: Tensor, optimizer: Any) -> None:
        """The gradients of `loss` (averaged over the ranks when distributed)."""
    def step(self, optimizer: Any) -> None:
        """One optimizer step."""
    def optimizer_state_numpy(self, optimizer: Any) -> dict:
        """The optimizer's state in torch's state_dict layout, tensors as NumPy."""
    def load_optimizer_state_numpy(self, optimizer: Any, sd: Mapping[str, Any]) -> None:
        """The reverse of `optimizer_state_numpy`; raises ValueError when it does not fit."""
    def seed(self, n: int) -> None:
        """Seed the framework's own RNG."""
    def set_threads(self, n: Optional[int]) -> None:
        """CPU threads (None or 0: the framework's default)."""
    def distributed_init(self) -> Tuple[int, int]:
        """Join the launcher's processes (torch: torchrun, jittor: mpirun): (rank, world size),
        (0, 1) when not launched by one."""
    def wrap_distributed(self, model: Any) -> Any:
        """The model for training steps, whose optimizer step then averages the gradients over the
        ranks (torch: DDP-wrapped; jittor: the model itself, its optimizer reduces); the model
        itself when not distributed."""
    def all_reduce_mean(self, x: float) -> float:
        """The mean of a float over the ranks."""
    def barrier(self) -> None:
        """Wait for every rank."""
    def distributed_close(self) -> None:
        """Leave the process group (nothing when not distributed)."""
    def is_internal_failure(self, error: BaseException) -> bool:
        """Whether `error` is the framework's own internal failure (Jittor: a failed check in its
        C++ core), which running the same command again avoids; torch has none."""


ATTRIBUTES = tuple(Tensor.__annotations__)
METHODS = tuple(name for name, value in vars(Tensor).items()  # as written above (not Protocol's own)
                if inspect.isfunction(value) and name not in ("__init__", "__subclasshook__"))
BACKEND_NAMES = tuple(Backend.__annotations__) + tuple(  # in the order the backend modules define them
    name for name, value in vars(Backend).items() if inspect.isfunction(value) and not name.startswith("_"))
