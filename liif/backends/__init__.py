"""Framework backends. Everything framework-specific lives in this package.

`get(name)` returns the module liif/backends/<name>.py, which exports the *backend contract*:
the names listed, with their types and meaning, in `liif.backends.contract.Backend` (both
`torch.py` and `jittor.py` define the same public names, in the same order). Tensors
themselves offer the methods listed in `liif.backends.contract.Tensor` (the surface
framework-neutral code may use); `tests/unit/backends/test_contract.py` checks both backends against
both, and the type check (tests/project/test_typecheck.py) checks their signatures against `Backend`.

Besides `get(name)`, the package offers `version(name)` (the framework's version, for the run's
record, without building a backend) and `is_internal_failure(name, error)` (asked of a loaded backend).

No module-level "current backend": a Hydra multirun may run torch and jittor jobs in
one process, so the backend is passed explicitly.
"""
import importlib
import sys
from typing import TYPE_CHECKING, Optional, cast

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


def is_internal_failure(name: str, error: BaseException) -> bool:
    """Whether `error` is framework `name`'s own internal failure (`is_internal_failure` of the
    contract), asked of its backend if this process loaded it: a framework never loaded has not
    failed, and is not loaded just to ask."""
    backend = sys.modules.get(f"liif.backends.{name}")
    return backend is not None and backend.is_internal_failure(error)


def version(name: str) -> Optional[str]:
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


if TYPE_CHECKING:  # the type check holds both modules to the contract's signatures
    from liif.backends import jittor as _jittor, torch as _torch
    _TORCH: Backend = _torch
    _JITTOR: Backend = _jittor
