"""Task dispatch for run.py, and the error policy of the command line.

- A user error (`liif.errors.LiifError`: bad input, missing data, impossible setting) ends a
  single run with one line on stderr and exit status 2.
- Running out of memory ends it with one line naming the settings to lower, also exit 2.
- Anything else is a bug: its traceback is printed (by Hydra) and the exit status is 1.
`debug=true` shows the traceback in every case. In a multirun a user error (or running out of
memory) prints one line for its job and the sweep goes on; at the sweep's end the details the
failures share (e.g. the expected data layout) are printed once and the exit status is 2
(liif.cli.hydra_callbacks). A bug is raised, so Hydra records the failed job with its traceback.
"""
import importlib
import logging
import os
import sys

from liif.errors import MEMORY_SETTINGS, ConfigError, LiifError, UserError, is_out_of_memory  # noqa: F401

log = logging.getLogger("liif")

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")

TASKS = {"train": "liif.training.trainer", "test": "liif.evaluation.evaluate", "demo": "liif.inference.demo", "report": "liif.report",
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


def register_configs():
    """Store `liif.config.RunConfig` as `liif_schema`, the schema conf/config.yaml starts from (Hydra
    then checks every key and type of every config file and override while composing), and the
    `model` config groups of liif/models/presets.py."""
    from hydra.core.config_store import ConfigStore

    from liif.run import labels
    from liif.config import RunConfig
    from liif.models.presets import register_with_hydra
    labels.register()  # the run-name resolver conf/config.yaml uses
    ConfigStore.instance().store(name="liif_schema", node=RunConfig)
    register_with_hydra()


def compose(overrides=(), return_hydra_config=False):
    """The composed config of `python run.py OVERRIDES` (tests, benchmarks, notebooks)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def typed_config(cfg):
    """The composed Hydra config -> liif.config.RunConfig: each node becomes its dataclass, whose
    checks run now (a range error is a ConfigError naming the key), before any work."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    missing = _missing_keys(cfg)
    if missing:
        raise ConfigError(f"{missing[0]} must be given (e.g. python run.py ... {missing[0]}=VALUE)")
    from liif.config import unknown_setting
    problem = unknown_setting(OmegaConf.to_container(cfg, resolve=False))
    if problem:  # `+train.typo=1`: Hydra adds what `+` asks for, even to a typed node
        raise ConfigError(problem)
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # a value that only resolving reveals (an interpolation, an env variable)
        raise ConfigError(f"{getattr(e, 'full_key', None) or 'config'}: {str(e).splitlines()[0]}") from None


def _missing_keys(node, prefix=""):
    """The keys left at ??? (MISSING), found without resolving any interpolation."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    out = []
    for key in keys:
        name = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix[:-1]}[{key}]"
        if OmegaConf.is_missing(node, key):
            out.append(name)
        elif not OmegaConf.is_interpolation(node, key):
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_none():
                out += _missing_keys(child, name + ".")
    return out


def hydra_choices():
    """Hydra's config-group choices of this job ({} outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return dict(HydraConfig.get().runtime.choices)
    except Exception:  # not inside a Hydra job (a config composed by hand)
        return {}


def run_task(cfg):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    out_dir = _output_dir(cfg)
    try:
        config = typed_config(cfg)  # the task's name and settings are checked here (liif.config.TaskConfig, RunConfig)
        return importlib.import_module(TASKS[config.task.name]).main(config, choices=hydra_choices())
    except KeyboardInterrupt:  # Ctrl-C outside the trainer's loop and the test pass (which handle it)
        print("interrupted by SIGINT", file=sys.stderr)
        sys.exit(128 + 2)
    except Exception as e:
        user_error, oom = isinstance(e, LiifError), is_out_of_memory(e)
        if not multirun and out_dir:
            # a command that failed before its run started leaves no folder of Hydra's files only
            from liif.run.rundir import remove_hydra_only_folder
            remove_hydra_only_folder(out_dir)
        if JITTOR_INTERNAL in str(e) and not user_error:
            print(JITTOR_HINT, file=sys.stderr)
        if cfg.get("debug") or not (user_error or oom):
            raise
        message = out_of_memory_message(e) if oom else one_line(e)
        if multirun:  # one line per failed job: its metrics.json records the failure
            print(f"error: {out_dir}: {message.splitlines()[0]}", file=sys.stderr)
            return None
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _output_dir(cfg):
    try:
        return os.fspath(cfg.output_dir)
    except Exception:  # no Hydra run directory (e.g. composed by hand)
        return None
