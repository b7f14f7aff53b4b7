"""Framework backends. Everything framework-specific lives in this package.

`get(name)` returns the module liif/backends/<name>.py, which exports the *backend contract*:
the names listed, with their types and meaning, in `liif.backends.contract.Backend` (both
`torch.py` and `jittor.py` define the same public names, in the same order). Tensors
themselves offer the methods listed in `liif.backends.contract.Tensor` (the surface
framework-neutral code may use); `tests/test_backend_contract.py` checks both backends against
both, and the type check (tests/test_typecheck.py) checks their signatures against `Backend`.

No module-level "current backend": a Hydra multirun may run torch and jittor jobs in
one process, so the backend is passed explicitly.
"""
import importlib
from typing import TYPE_CHECKING, cast

from liif.backends.contract import Backend
from liif.errors import ConfigError, FrameworkError

FRAMEWORKS = ("torch", "jittor")


def get(name: str) -> Backend:
    """The backend module of framework `name` ('torch' or 'jittor').

    Raises:
        ConfigError: an unknown name. FrameworkError: the framework is not installed.
    """
    if name not in FRAMEWORKS:
        raise ConfigError(f"unknown framework '{name}'; choose one of: {', '.join(FRAMEWORKS)}")
    try:
        return cast(Backend, importlib.import_module(f"liif.backends.{name}"))
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise FrameworkError(f"framework '{name}' is not installed: pip install -e '.[{name}]'") from None


if TYPE_CHECKING:  # the type check holds both modules to the contract's signatures
    from liif.backends import jittor as _jittor, torch as _torch
    _TORCH: Backend = _torch
    _JITTOR: Backend = _jittor
