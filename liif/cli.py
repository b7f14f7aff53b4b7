"""Task dispatch for run.py, and the error policy of the command line.

- A user error (`liif.errors.LiifError`: bad input, missing data, impossible setting) ends a
  single run with one line on stderr and exit status 2.
- Running out of memory ends it with one line naming the settings to lower, also exit 2.
- Anything else is a bug: its traceback is printed (by Hydra) and the exit status is 1.
`debug=true` shows the traceback in every case. In a multirun every error is raised, so Hydra
records the failed job and the sweep goes on.
"""
import importlib
import logging
import os
import sys

from liif.errors import MEMORY_SETTINGS, ConfigError, LiifError, UserError, is_out_of_memory  # noqa: F401

log = logging.getLogger("liif")

TASKS = {"train": "liif.train", "test": "liif.evaluate", "demo": "liif.demo", "report": "liif.report",
         "serve": "liif.serve.task"}

# how Jittor ends the message of an internal failure (a failed check inside its C++ core)
JITTOR_INTERNAL = "Could you please report this issue"
JITTOR_HINT = ("(an internal failure of Jittor, not of this run's input, seen rarely while Jittor compiles "
               "kernels (see docs/jittor.md). Checkpoints are written atomically: run the same command "
               "again, with resume=true for a training run.)")


def one_line(error):
    """The message printed for a user error; a Jittor internal failure gets what to do about it."""
    message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
    if JITTOR_INTERNAL in message:
        message += "\n" + JITTOR_HINT
    return message


def out_of_memory_message(error):
    return (f"out of memory ({type(error).__name__}); lower " + " or ".join(MEMORY_SETTINGS)
            + ", or use a machine with more memory (debug=true shows where it happened)")


def run_task(cfg):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    out_dir = _output_dir(cfg)
    try:
        name = cfg.task.name
        if name not in TASKS:
            raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
        return importlib.import_module(TASKS[name]).main(cfg)
    except Exception as e:
        user_error, oom = isinstance(e, LiifError), is_out_of_memory(e)
        if not multirun and out_dir:
            # a command that failed before its run started leaves no folder of Hydra's files only
            from liif.rundir import remove_hydra_only_folder
            remove_hydra_only_folder(out_dir)
        if JITTOR_INTERNAL in str(e) and not user_error:
            print(JITTOR_HINT, file=sys.stderr)
        if cfg.get("debug") or multirun or not (user_error or oom):
            raise
        print(f"error: {out_of_memory_message(e) if oom else one_line(e)}", file=sys.stderr)
        sys.exit(2)


def _output_dir(cfg):
    try:
        return os.fspath(cfg.output_dir)
    except Exception:  # no Hydra run directory (e.g. composed by hand)
        return None


def resolved_config(cfg):
    """The composed config as a plain dict, interpolations resolved (for config.yaml)."""
    from omegaconf import OmegaConf
    return OmegaConf.to_container(cfg, resolve=True)


def run_record(cfg, task):
    """A run's metrics.json record as far as the config knows it (liif.record.RunRecord)."""
    from omegaconf import OmegaConf

    from liif.record import RunRecord
    choices = {}
    try:
        from hydra.core.hydra_config import HydraConfig
        choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # not inside a Hydra job (a config composed by hand)
        pass
    try:
        run_name = cfg.run_name
    except Exception:  # an interpolation that needs Hydra (run_name outside a job)
        run_name = None
    return RunRecord(task=task, run_name=run_name, model=choices.get("model"), framework=cfg.framework.name,
                     dataset=cfg.dataset.name, seed=cfg.seed, choices=choices,
                     paper=OmegaConf.to_container(cfg.paper) if "paper" in cfg and cfg.paper is not None else None)
