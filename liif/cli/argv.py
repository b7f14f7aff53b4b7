"""The command line, checked and rewritten before Hydra composes the config (run.py).

- `resume=<run dir>` alone continues that run in that folder: the run's own overrides
  (`<dir>/.hydra/overrides.yaml`) are restored, then `hydra.run.dir=<dir> resume=true`.
  Overrides given beside it are accepted only where they cannot change what the run
  trains (more epochs, the device, threads ...); any other is refused with the reason.
- A key that the typed config (liif/config.py) does not have and that is no config group
  (`modle=rdn_liif`) is an error that names the nearest valid key, instead of Hydra's advice
  to add it with `+modle=...`.
- A number too large for a float (`train.lr=` and 400 digits) is an error, not Hydra's traceback.
"""
import os
import re

import yaml

from liif.errors import ConfigError


class ArgvError(ConfigError):
    """A command line that cannot run as typed: one line for the user."""


# ---- resume=<run dir> ----------------------------------------------------------------------
# Overrides that may change when a run is resumed: they change how long or where it runs, or
# the final test, never the model, the data or the optimisation of the steps already taken.
SAFE_ON_RESUME = ("train.epochs", "train.epoch_val", "train.epoch_save", "train.num_workers", "train.prefetch",
                  "train.val_batch_size", "device", "framework", "framework.threads", "framework.pin_memory",
                  "framework.infer_precision", "eval_bsize", "scales", "debug", "on_bad_file", "paths.data_dir",
                  "paths.sample_dir", "hydra.verbose", "hydra/job_logging", "hydra/hydra_logging")

WHY_NOT = [  # (key prefix, why it cannot change on resume), first match wins
    (("model", "model/"), "it changes the model's architecture, and the checkpoints in the run folder hold the old one"),
    (("experiment", "table", "profile"), "it changes the experiment (model, data and schedule) the run was started with"),
    (("dataset", "scale", "paths"), "it changes the data the run trains on"),
    (("train",), "it changes the optimisation of the steps already taken"),
    (("seed",), "it changes the random draws of the steps already taken"),
    (("task", "checkpoint", "resume"), "resume=<run dir> continues that run's training"),
    (("hydra.run.dir",), "resume=<run dir> continues in that folder"),
]


def key_of(override):
    """`+a.b=1` -> `a.b`; None for flags (`-m`) and words without `=` (`--cfg job`)."""
    if override.startswith("-") or "=" not in override:
        return None
    return override.split("=", 1)[0].lstrip("+~")


def saved_overrides(run_dir):
    """The overrides a run was started with (Hydra's `.hydra/overrides.yaml`), or None."""
    path = os.path.join(run_dir, ".hydra", "overrides.yaml")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        saved = yaml.safe_load(f) or []
    return [str(x) for x in saved if key_of(str(x)) not in ("resume", "hydra.run.dir")]


def resume_in_place(argv):
    """argv with `resume=<run dir>` -> the run's saved overrides, the safe new ones, then
    `hydra.run.dir=<dir> resume=true`. Other forms of resume= (true, a checkpoint file, a
    folder without `.hydra/`) are left to the trainer."""
    resume = [a for a in argv if key_of(a) == "resume"]
    if not resume:
        return argv
    run_dir = resume[-1].split("=", 1)[1].strip("'\"").rstrip("/") or "/"
    saved = saved_overrides(run_dir) if os.path.isdir(run_dir) else None
    if saved is None:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        raise ArgvError(f"resume={run_dir} continues one run: drop -m/--multirun")
    task = _run_task(run_dir, saved)
    if task != "train":
        raise ArgvError(f"resume={run_dir}: that folder holds a task={task} run; resume= continues a training run")
    saved_by_key = {key_of(s): s for s in saved}
    extra = []
    for arg in argv:
        key = key_of(arg)
        if key is None or key == "resume" or saved_by_key.get(key) == arg:
            if key is None:
                extra.append(arg)
            continue
        if key not in SAFE_ON_RESUME:
            raise ArgvError(f"resume={run_dir} cannot take {arg}: {_why_not(key)}. Resume it as it was "
                            f"(resume={run_dir}, plus e.g. train.epochs=N), or start a new run with the change: "
                            f"python run.py {' '.join(saved + [arg])}")
        extra.append(arg)
    return saved + extra + [f"hydra.run.dir={_quote(run_dir)}", "resume=true"]


def _run_task(run_dir, saved):
    """The task the run was started with: its config.yaml's, else its overrides', else train."""
    try:
        with open(os.path.join(run_dir, "config.yaml")) as f:
            return (yaml.safe_load(f) or {}).get("task", {}).get("name", "train")
    except (OSError, AttributeError, yaml.YAMLError):
        tasks = [s.split("=", 1)[1] for s in saved if key_of(s) == "task"]
        return tasks[-1] if tasks else "train"


def _why_not(key):
    for prefixes, why in WHY_NOT:
        if any(key == p or key.startswith(p.rstrip("/") + ("/" if p.endswith("/") else ".")) for p in prefixes):
            return why
    return "only settings that leave the training unchanged (epochs, device, threads ...) may change on resume"


def _quote(value):
    """A Hydra override value: quoted when it holds characters its grammar treats specially."""
    if all(c.isalnum() or c in "/._-:~@%+" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---- numbers no setting can hold -------------------------------------------------------------
# An integer of more than 308 digits: Hydra reads it as an int, and OmegaConf's float() of it for a
# float setting (`train.lr=1000...0`) raised an OverflowError traceback inside Hydra's composition,
# before any check of ours could run. No setting takes such a number.
# Only a whole value or element is a number to Hydra (`[2, 1000...0]`, `{a: 1000...0}`), not digits in a path.
_HUGE_INT = re.compile(r"(?:^|[\[,:{])\s*([-+]?\d{309,})\s*(?=$|[\],}])")


def check_numbers(argv):
    """Raise ArgvError for an override holding an integer too large for a float (over 308 digits)."""
    for arg in argv:
        key = key_of(arg)
        match = _HUGE_INT.search(arg.split("=", 1)[1]) if key else None
        if match:
            digits = len(match.group(1).lstrip("+-"))
            raise ArgvError(f"{key}= holds a number of {digits} digits, more than any setting takes (a float holds "
                            "about 1.8e308); check the value")


# ---- unknown keys -------------------------------------------------------------------------
def check_keys(argv, conf_dir):
    """Raise ArgvError for an override whose key the typed config (liif.config.RunConfig) does not
    have and that is no config group of conf/ or of Hydra's ConfigStore, naming the nearest valid
    key (liif.config.unknown_setting). `+key=` (adding on purpose) and hydra's own keys pass."""
    from liif.config import unknown_setting
    groups = config_groups(conf_dir)
    for arg in argv:
        key = key_of(arg)
        if key is None or arg.startswith("+") or arg.startswith("~") or key.split(".")[0].split("/")[0] == "hydra":
            continue
        if key in groups:  # model/encoder=rdn, experiment=...
            continue
        problem = unknown_setting(_nested(key.split(".")), also=groups, where=arg)
        if problem:
            raise ArgvError(problem)


def _nested(parts):
    """`['a', 'b', 'c']` -> {'a': {'b': {'c': None}}}: an override's key as the settings it touches."""
    return {parts[0]: _nested(parts[1:]) if len(parts) > 1 else None}


def config_groups(conf_dir):
    """The config groups a command line can choose from (`model`, `model/encoder`, `experiment` ...):
    the folders of conf/ and the groups of Hydra's ConfigStore (the model presets,
    liif/models/presets.py)."""
    from hydra.core.config_store import ConfigStore

    from liif.cli.main import register_model_presets
    register_model_presets()  # as run.py does (storing again replaces, so twice is harmless)
    groups = set()

    def walk(tree, group):
        for name, item in tree.items():
            sub = f"{group}/{name}" if group else name
            if isinstance(item, dict) and sub != "hydra":
                groups.add(sub)
                walk(item, sub)
    walk(ConfigStore.instance().repo, "")
    for folder, _, _ in os.walk(conf_dir):
        group = os.path.relpath(folder, conf_dir).replace(os.sep, "/")
        if group != "." and group != "hydra" and not group.startswith("hydra/"):
            groups.add(group)
    return groups
