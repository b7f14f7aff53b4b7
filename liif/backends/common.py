"""Framework-free helpers shared by the backend modules."""
import numpy as np

from liif.errors import CheckpointError, ConfigError, FrameworkError


def check_state_dict(own_shapes, sd):
    """Raise a CheckpointError (a ValueError) naming the missing, unexpected and mis-shaped keys of `sd` against
    `own_shapes` ({key: shape} of the model), so that loading is strict on every backend."""
    missing = sorted(set(own_shapes) - set(sd))
    unexpected = sorted(set(sd) - set(own_shapes))
    shapes = [k for k in own_shapes if k in sd and tuple(own_shapes[k]) != tuple(np.shape(sd[k]))]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "checkpoint does not fit the model: "
            + "; ".join(f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys))


def check_dtype(dtype):
    """The model float types both backends support; float64 is for numerical checks."""
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"unknown dtype '{dtype}'; use float32 or float64")
    return dtype


# What torchrun sets in each process it starts, and what joining its process group needs: the
# env:// rendezvous reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and LOCAL_RANK picks the GPU.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_NOT_TORCHRUN = ("for one process, unset them (env -u WORLD_SIZE python run.py ...); for several, start the "
                 "run with torchrun --nproc_per_node=N run.py ...")


def torchrun_world(environ):
    """(rank, local_rank, world_size) of a process that torchrun started with others, or None for a
    plain run, from `environ` (os.environ).

    A run is distributed only when WORLD_SIZE is above 1. WORLD_SIZE unset or 1 is one process
    (torchrun --nproc_per_node=1 included), whatever else the environment holds: a shell inside a
    cluster job may carry a stray RANK or LOCAL_RANK. WORLD_SIZE above 1 needs the whole set, each
    consistent; anything less is a FrameworkError naming the variables (a partial set failed deep in
    torch's rendezvous with a traceback, or waited for ranks that never come)."""
    world = environ.get("WORLD_SIZE")
    if world is None:
        return None
    if not world.strip().isdigit() or int(world) < 1:
        raise FrameworkError(f"WORLD_SIZE={world[:40]!r} in the environment must be a positive integer (torchrun sets it "
                             f"to the number of processes); {_NOT_TORCHRUN}")
    world = int(world)
    if world == 1:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if not environ.get(name)]
    if missing:
        raise FrameworkError(f"WORLD_SIZE={world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             f"not: this is not a process of torchrun, which sets all of "
                             f"{', '.join(TORCHRUN_VARIABLES)}; {_NOT_TORCHRUN}")
    numbers = {}
    for name, low, high in (("RANK", 0, world - 1), ("LOCAL_RANK", 0, world - 1), ("MASTER_PORT", 1, 65535)):
        value = environ[name].strip()
        if not value.isdigit() or not low <= int(value) <= high:
            raise FrameworkError(f"{name}={environ[name][:40]!r} in the environment must be an integer from {low} to "
                                 f"{high} (WORLD_SIZE={world}); {_NOT_TORCHRUN}")
        numbers[name] = int(value)
    return numbers["RANK"], numbers["LOCAL_RANK"], world
