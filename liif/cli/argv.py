"""The command line, checked and rewritten before Hydra composes the config (run.py).

- `resume=<run dir>` alone continues that run in that folder: the run's own overrides
  (`<dir>/.hydra/overrides.yaml`) are restored, then `hydra.run.dir=<dir> resume=true`.
  Overrides given beside it are accepted only where they cannot change what the run
  trains (more epochs, the device, threads ...); any other is refused with the reason.
- A key that exists nowhere in conf/ (`modle=rdn_liif`) is an error that names the nearest
  valid key, instead of Hydra's advice to add it with `+modle=...`.
"""
import difflib
import os

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


# ---- unknown keys -------------------------------------------------------------------------
def check_keys(argv, conf_dir):
    """Raise ArgvError for an override whose key (its first two levels) is defined nowhere in
    conf/, naming the nearest valid key. `+key=` (adding on purpose) and hydra's own keys pass."""
    known = known_keys(conf_dir)
    for arg in argv:
        key = key_of(arg)
        if key is None or arg.startswith("+") or arg.startswith("~") or key.split(".")[0].split("/")[0] == "hydra":
            continue
        parts = key.split(".")
        for depth in (1, 2):
            prefix = ".".join(parts[:depth])
            if depth > len(parts) or prefix in known:
                continue
            if depth == 2 and not any(k.startswith(parts[0] + ".") for k in known):
                break  # a node we know nothing below (e.g. a free-form dict): let Hydra judge
            siblings = [k for k in known if k.count(".") == depth - 1 and k.startswith(".".join(parts[:depth - 1]))]
            near = difflib.get_close_matches(prefix, siblings, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ArgvError(f"unknown setting '{prefix}' in {arg}: {hint}(`python run.py --cfg job` prints every "
                            "setting)")


def known_keys(conf_dir):
    """Config groups (`model`, `model/encoder` ...) and every key of the first two levels that a
    file in conf/ or a node in Hydra's ConfigStore (the model presets, liif/models/presets.py) can set,
    placed by its package (`# @package ...`, else its group)."""
    known = _config_store_keys()
    for folder, dirs, files in os.walk(conf_dir):
        group = os.path.relpath(folder, conf_dir).replace(os.sep, "/")
        if group == "hydra" or group.startswith("hydra/"):
            continue
        if group != ".":
            known.add(group)
        for name in files:
            if not name.endswith(".yaml"):
                continue
            path = os.path.join(folder, name)
            prefix = _package(path, "" if group == "." else group.replace("/", "."))
            try:
                with open(path) as f:
                    node = yaml.safe_load(f)
            except yaml.YAMLError:
                continue
            _add_keys(known, prefix, node if isinstance(node, dict) else {})
    return known


def _config_store_keys():
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from liif.cli.main import register_model_presets
    register_model_presets()  # as run.py does (storing again replaces, so twice is harmless)
    known = set()

    def walk(tree, group):
        for name, item in tree.items():
            if isinstance(item, dict):  # a group
                sub = f"{group}/{name}" if group else name
                if sub != "hydra":
                    known.add(sub)
                    walk(item, sub)
            elif group:  # a config of the group
                node = OmegaConf.to_container(item.node) if OmegaConf.is_config(item.node) else item.node
                package = item.package or group.replace("/", ".")
                _add_keys(known, "" if package == "_global_" else package, node if isinstance(node, dict) else {})
    walk(ConfigStore.instance().repo, "")
    return known


def _add_keys(known, prefix, node):
    """The keys of `node` placed under `prefix`, down to two levels (deeper ones are not checked)."""
    parts = prefix.split(".") if prefix else []
    known.update(".".join(parts[:depth]) for depth in (1, 2) if len(parts) >= depth)
    if len(parts) >= 2:
        return
    for key, value in node.items():
        if key == "defaults" and not parts:
            continue
        full = ".".join(parts + [str(key)])
        known.add(full)
        if isinstance(value, dict) and not parts:
            known.update(f"{full}.{k}" for k in value)


def _package(path, default):
    with open(path) as f:
        for line in f:
            if line.startswith("# @package"):
                package = line.split("@package", 1)[1].strip()
                return "" if package == "_global_" else package
            if line.strip() and not line.startswith("#"):
                break
    return default
