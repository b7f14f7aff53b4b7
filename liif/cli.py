"""Task dispatch for run.py, and the one-line error policy.

A user error (bad input, missing data, impossible scale) ends a single run with one line
on stderr and exit status 2; `debug=true` shows the traceback instead. In a multirun the
error is raised, so Hydra records the failed job and the sweep goes on.
"""
import importlib
import logging
import sys

log = logging.getLogger("liif")

TASKS = {"train": "liif.train", "test": "liif.evaluate", "demo": "liif.demo", "report": "liif.report"}


class UserError(Exception):
    """Something the user can fix: the message says what and how."""


USER_ERRORS = (UserError, ValueError, FileNotFoundError, ImportError, RuntimeError, KeyError)

# how Jittor ends the message of an internal failure (a failed check inside its C++ core)
JITTOR_INTERNAL = "Could you please report this issue"


def one_line(error):
    """The message printed for a user error; a Jittor internal failure gets what to do about it."""
    message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
    if JITTOR_INTERNAL in message:
        message += ("\n(an internal failure of Jittor, not of this run's input, seen rarely while Jittor compiles "
                    "kernels (see docs/jittor.md). Checkpoints are written atomically: run the same command "
                    "again, with resume=true for a training run.)")
    return message


def run_task(cfg):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    name = cfg.task.name
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    try:
        return importlib.import_module(TASKS[name]).main(cfg)
    except USER_ERRORS as e:
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if cfg.get("debug") or multirun:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
