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

from liif import backends
from liif.errors import MEMORY_SETTINGS, ConfigError, LiifError, is_out_of_memory

log = logging.getLogger("liif")

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")

TASKS = {"train": "liif.training.trainer", "test": "liif.evaluation.evaluate", "demo": "liif.inference.demo", "report": "liif.report",
         "serve": "liif.serve.task"}

# what to do after a framework's internal failure (liif.backends.is_internal_failure says which)
INTERNAL_FAILURE_HINT = ("(an internal failure of {framework}, not of this run's input (see docs/{framework}.md). "
                         "Checkpoints are written atomically: run the same command again, with resume=true "
                         "for a training run.)")


def one_line(error, framework=None):
    """The message printed for a user error; an internal failure of `framework` (the run's) gets what
    to do about it."""
    message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
    if framework and backends.is_internal_failure(framework, error):
        message += "\n" + INTERNAL_FAILURE_HINT.format(framework=framework)
    return message


def out_of_memory_message(error):
    return (f"out of memory ({type(error).__name__}); lower " + " or ".join(MEMORY_SETTINGS)
            + ", or use a machine with more memory (debug=true shows where it happened)")


def register_configs():
    """Store `liif.config.RunConfig` as `liif_schema`, the schema conf/config.yaml starts from (Hydra
    then checks every key and type of every config file and override while composing), and the
    `model` config groups of liif/models/presets.py."""
    from hydra.core.config_store import ConfigStore

    from liif.config import RunConfig
    register_run_name_resolver()  # conf/config.yaml's run_name uses it
    ConfigStore.instance().store(name="liif_schema", node=RunConfig)
    register_model_presets()


def register_model_presets():
    """The config groups `model`, `model/encoder` and `model/decoder` in Hydra's ConfigStore, made from
    liif/models/presets.py with the defaults lists YAML files would have, so that the sub-groups can
    still be swapped (`model=rdn_liif model/encoder=edsr_baseline`). Storing again replaces."""
    import copy

    from hydra.core.config_store import ConfigStore

    from liif.models.presets import DECODERS, ENCODERS, PRESETS
    cs = ConfigStore.instance()
    for name, node in ENCODERS.items():
        cs.store(group="model/encoder", name=name, node=copy.deepcopy(node), package="model.args.encoder_spec")
    for name, node in DECODERS.items():
        node = copy.deepcopy(node)
        node["args"] = {"encoder_spec": "???", **node["args"]}
        cs.store(group="model/decoder", name=name, node=node, package="model")
    for name, (decoder, encoder, overrides) in PRESETS.items():
        node = {"defaults": [{"decoder": decoder}, {"encoder": encoder}, "_self_"]}
        if overrides:
            node["args"] = copy.deepcopy(overrides)
        cs.store(group="model", name=name, node=node, package="model")


RUN_NAME_RESOLVER = "liif_model_label"


def register_run_name_resolver():
    """The OmegaConf resolver conf/config.yaml names the run folder with (liif.run.labels.label_for_run).
    Registered by run.py, by `compose` and by liif.cli.hydra_callbacks, which Hydra imports in every
    process that starts jobs, launchers included."""
    from omegaconf import OmegaConf
    if not OmegaConf.has_resolver(RUN_NAME_RESOLVER):
        OmegaConf.register_new_resolver(RUN_NAME_RESOLVER, _run_name)


def _run_name(task, checkpoint, choice, model=None):
    """`${liif_model_label:${task.name},${checkpoint},${hydra:runtime.choices.model},${model}}`, with the
    model node made a plain dict."""
    from omegaconf import DictConfig, OmegaConf

    from liif.run.labels import label_for_run
    if isinstance(model, DictConfig):
        try:
            model = OmegaConf.to_container(model, resolve=True)
        except Exception:  # noqa: BLE001 - an unresolvable config node: compare with nothing
            model = None
    return label_for_run(task, checkpoint, choice, model)


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
        framework = _framework(cfg)
        if not user_error and framework and backends.is_internal_failure(framework, e):
            print(INTERNAL_FAILURE_HINT.format(framework=framework), file=sys.stderr)
        if cfg.get("debug") or not (user_error or oom):
            raise
        message = out_of_memory_message(e) if oom else one_line(e, framework)
        if multirun:  # one line per failed job: its metrics.json records the failure
            print(f"error: {out_dir}: {message.splitlines()[0]}", file=sys.stderr)
            return None
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _framework(cfg):
    try:
        return str(cfg.framework.name)
    except Exception:  # a config too broken to name its framework
        return None


def _output_dir(cfg):
    try:
        return os.fspath(cfg.output_dir)
    except Exception:  # no Hydra run directory (e.g. composed by hand)
        return None
