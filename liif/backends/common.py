"""Framework-free helpers shared by the backend modules."""
import re

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
    numbers = _launcher_integers(environ, f"WORLD_SIZE={world}", "a process of torchrun", TORCHRUN_VARIABLES,
                                 (("RANK", 0, world - 1), ("LOCAL_RANK", 0, world - 1), ("MASTER_PORT", 1, 65535)),
                                 _NOT_TORCHRUN)
    return numbers["RANK"], numbers["LOCAL_RANK"], world


def _launcher_integers(environ, size, process, required, ranges, advice):
    """The integers `ranges` names ((name, low, high): a name absent from `environ` is skipped) of a
    process a launcher started, after checking that every variable of `required` is set. `size` (the
    set's size, e.g. "WORLD_SIZE=4") and `process` ("a process of torchrun") name them in the
    FrameworkError, one line ending with `advice`, for a variable missing or out of its range."""
    missing = [name for name in required if not environ.get(name)]
    if missing:
        raise FrameworkError(f"{size} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                             f"this is not {process}, which sets all of {', '.join(required)}; {advice}")
    numbers = {}
    for name, low, high in ranges:
        value = environ.get(name)
        if value is None:
            continue
        if not value.strip().isdigit() or not low <= int(value) <= high:
            raise FrameworkError(f"{name}={value[:40]!r} in the environment must be an integer from {low} to {high} "
                                 f"({size}); {advice}")
        numbers[name] = int(value)
    return numbers


# What `srun -n N` sets in each task of a job step. A batch script has SLURM_NTASKS and SLURM_PROCID=0
# too, but it is one process: only a step's own count (SLURM_STEP_NUM_TASKS) says how many were started.
SLURM_VARIABLES = ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_JOB_ID")
_NOT_SRUN = ("for one process, run it outside srun or with srun -n 1; for several, srun -n N python run.py ... "
             "(one task per process) or torchrun")


def slurm_world(environ):
    """(rank, local_rank, world_size, master_address, master_port) of a process that `srun -n N`
    started with others (N > 1), or None for anything else: outside SLURM, a batch script (one process
    whatever its --ntasks), `srun -n 1`, a shell inside an allocation. Where torchrun's variables are
    present (WORLD_SIZE), torchrun started the process: this is not asked.

    The master is the first node of the step, the port MASTER_PORT when set, else one derived from the
    job and step ids (the same in every task, different for steps that run at once). A step with more
    than one task that lacks a variable or has an inconsistent one is a FrameworkError naming it."""
    tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if tasks is None or tasks.strip() == "1":
        return None
    if not tasks.strip().isdigit() or int(tasks) < 1:
        raise FrameworkError(f"SLURM_STEP_NUM_TASKS={tasks[:40]!r} in the environment must be a positive integer "
                             f"(srun sets it to the number of tasks); {_NOT_SRUN}")
    world = int(tasks)
    numbers = _launcher_integers(environ, f"SLURM_STEP_NUM_TASKS={world}", "a task of srun", SLURM_VARIABLES,
                                 (("SLURM_PROCID", 0, world - 1), ("SLURM_LOCALID", 0, world - 1),
                                  ("SLURM_JOB_ID", 0, 2 ** 63), ("SLURM_STEP_ID", 0, 2 ** 63))
                                 + ((("MASTER_PORT", 1, 65535),) if environ.get("MASTER_PORT") else ()), _NOT_SRUN)
    step = numbers.get("SLURM_STEP_ID", 0)
    port = numbers.get("MASTER_PORT") or 20000 + (numbers["SLURM_JOB_ID"] * 97 + step) % 20000
    return (numbers["SLURM_PROCID"], numbers["SLURM_LOCALID"], world,
            first_host(environ["SLURM_STEP_NODELIST"]), port)


def first_host(nodelist):
    """The first host of a SLURM host list: `vm` -> vm, `gpu[07-09,12],cpu1` -> gpu07 (zero padding kept)."""
    match = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?([^,\[]*)", nodelist.strip())
    prefix, ranges, suffix = match.groups()
    if ranges is None:
        return prefix + suffix
    return prefix + ranges.split(",")[0].split("-")[0] + suffix
