"""The command line, checked and rewritten before Hydra composes the config (run.py).

- `resume=<run dir>` alone continues that run in that folder: the run's own overrides
  (`<dir>/.hydra/overrides.yaml`) are restored, then `hydra.run.dir=<dir> resume=true`.
  The folder may come from anyone: only overrides that define a training run come back (no
  hydra.*, no other task, no `_target_`, no interpolation; `restorable`), and they must make a
  valid config; no link in the folder may lead out of it. Anything else is refused in one line.
  Overrides given beside it are accepted only where they cannot change what the run
  trains (more epochs, the device, threads ...); any other is refused with the reason.
- A key that the typed config (liif/config.py) does not have and that is no config group
  (`modle=rdn_liif`) is an error that names the nearest valid key, instead of Hydra's advice
  to add it with `+modle=...`.
- A number too large for a float (`train.lr=` and 400 digits) is an error, not Hydra's traceback.
"""
import os
import re

from liif.errors import ConfigError, LiifError
from liif.run.untrusted import check_folder, printable, read_string_list


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


# What a run folder's saved overrides may set: what defines a training run, as the command line
# that started it could (the model, its data, the recipe, the framework, the seed, the evaluation).
# A folder may come from anyone, so nothing else comes back from it: not hydra.* (callbacks run code,
# the launcher, the output folders), not another task or its inputs and outputs, not where files go.
RESTORABLE = ("model", "experiment", "profile", "dataset", "scale", "train", "framework", "paths", "seed", "device",
              "checkpoint", "scales", "eval_bsize", "infer", "test", "debug", "on_bad_file", "paper", "task")
NOT_RESTORED = [  # (key prefix, why a run folder may not set it), first match wins
    (("hydra",), "hydra.* and hydra/* configure Hydra itself (callbacks and instantiation run code; the "
                 "launcher, the sweeper and the output folders), never the run"),
    (("output_dir", "run_name"), "it says where the run's files are written"),
    (("input", "size", "output", "dir"), "it is a setting of another task (demo, report, serve)"),
    (("task",), "resume= continues a training run: another task, or a task's other settings, would run instead"),
    (("local",), "conf/local/ is this machine's own config, not a run's"),
]
# Hydra writes these of a run folder in place (open, truncate, write), not through a rename
HYDRA_IN_PLACE = (os.path.join(".hydra", "config.yaml"), os.path.join(".hydra", "hydra.yaml"),
                  os.path.join(".hydra", "overrides.yaml"), "run.log")  # the job's log: run.py's name
MAX_OVERRIDE_CHARS = 4096   # the longest of the paper's settings is a list of a few numbers
MAX_OVERRIDE_DEPTH = 16
GROUP_OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a file of conf/<group>/: no folder, no '..'


def saved_overrides(run_dir):
    """The overrides a run was started with (Hydra's `.hydra/overrides.yaml`), or None without one,
    read as input (liif.run.untrusted.read_string_list: a size cap, no aliases) and each checked by
    `restorable`: an ArgvError (or RunDirError) in one line for anything a run folder may not say."""
    path = os.path.join(run_dir, ".hydra", "overrides.yaml")
    if not os.path.lexists(path):
        return None
    from liif.cli.main import CONF_DIR
    saved, groups = [], config_groups(CONF_DIR)
    for override in read_string_list(path):
        kept = restorable(override, run_dir, groups)
        if kept:
            saved.append(kept)
    return saved


def restorable(override, run_dir, groups):
    """`override` (a string of a run folder's overrides.yaml) if a resume may restore it; None for
    the ones a resume replaces or drops: `resume=` (resume= adds its own), `table=` (it only chose
    the sweep the run was a job of: conf/table/*.yaml set Hydra's mode and sweep; restored, it would
    start the whole sweep again). Anything else is an ArgvError naming it and why. `groups`: the
    config groups (`config_groups`), whose values must be names of their options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    def refuse(why):
        return ArgvError(f"resume={run_dir}: its saved override {printable(override)} is refused: {why}")
    # measured before Hydra's parser sees it: it recurses once per bracket (30000 '[': a RecursionError after seconds)
    if len(override) > MAX_OVERRIDE_CHARS or _bracket_depth(override) > MAX_OVERRIDE_DEPTH:
        raise refuse(f"over {MAX_OVERRIDE_CHARS} characters or {MAX_OVERRIDE_DEPTH} brackets deep, which no run's "
                     "setting is")
    try:
        parsed = OverridesParser.create().parse_override(override)
    except HydraException as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise refuse(f"it is not an override Hydra can parse ({printable(first)})") from None
    key = parsed.key_or_group
    if key in ("resume", "table"):
        return None
    if parsed.package is not None:
        raise refuse("a package (key@package=) puts a config elsewhere in the tree")
    if parsed.is_sweep_override():
        raise refuse("a sweep (a,b / glob / range / choice) is no single run's setting")
    if any(_instantiation_key(part) for part in re.split(r"[./]", key)):
        raise refuse("_target_ and the other _keys_ of Hydra's instantiation make objects (run code)")
    if not _restorable_key(key):
        raise refuse(_why_not_restored(key) + "; a resume restores only what defines the run (model, dataset, "
                     "train.*, framework ...)")
    value = parsed.value() if parsed.value_type is not None else None
    problem = _value_problem(value)
    if problem:
        raise refuse(problem)
    if key in groups and value is not None and not (isinstance(value, str) and GROUP_OPTION.fullmatch(value)):
        raise refuse(f"{key}= takes the name of a file of conf/{key}/ (a path could load a YAML file from anywhere)")
    if key == "task" and value != "train":
        raise ArgvError(f"resume={run_dir}: that folder holds a task={printable(str(value))} run; resume= continues a "
                        "training run")
    return override


def _bracket_depth(text):
    depth = deepest = 0
    for c in text:
        depth += (c in "[{(") - (c in "]})")
        deepest = max(deepest, depth)
    return deepest


def _restorable_key(key):
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in RESTORABLE) and \
        not key.startswith("task.") and not key.startswith("task/")


def _instantiation_key(name):
    return len(name) > 2 and name.startswith("_") and name.endswith("_")  # _target_, _args_, _partial_ ...


def _why_not_restored(key):
    for prefixes, why in NOT_RESTORED:
        if any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in prefixes):
            return why
    return "no setting of a training run"


def _value_problem(value):
    """Why an override's value (as Hydra parses it: a primitive, or lists and dicts of them) cannot
    come from a run folder, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "${" in item:
            return ("an interpolation (${...}) is resolved into the run's config: ${oc.env:NAME} would copy an "
                    "environment variable into config.yaml")
        if isinstance(item, dict):
            if any(_instantiation_key(str(k)) for k in item):
                return "_target_ and the other _keys_ of Hydra's instantiation make objects (run code)"
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
    return None


def check_composes(saved, run_dir):
    """The saved overrides, composed and made the typed config (liif.config.RunConfig, whose checks
    run), as the resumed run will be: an ArgvError in one line if they do not, before Hydra starts."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from liif.cli.main import compose, typed_config
    # output_dir and run_name resolve only inside a Hydra run: given, so that the rest resolves
    try:
        typed_config(compose([*saved, f"output_dir={_quote(run_dir)}", "run_name=resumed"]))
    except (HydraException, OmegaConfBaseException, LiifError) as e:
        cause = e.__cause__ if isinstance(e, HydraException) and e.__cause__ else None
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if cause is not None and str(cause).strip():
            why += f" ({str(cause).strip().splitlines()[0]})"
        raise ArgvError(f"resume={run_dir}: its saved overrides do not make a valid run: {printable(why, 300)}") from None


def resume_in_place(argv):
    """argv with `resume=<run dir>` -> the run's saved overrides, the safe new ones, then
    `hydra.run.dir=<dir> resume=true`. Other forms of resume= (true, a checkpoint file, a
    folder without `.hydra/`) are left to the trainer. The folder is input: before
    anything of it is used, no link in it may lead out of it (liif.run.untrusted.check_folder), and
    its overrides must be ones a run folder may set (`restorable`) that compose (`check_composes`)."""
    resume = [a for a in argv if key_of(a) == "resume"]
    if not resume:
        return argv
    run_dir = resume[-1].split("=", 1)[1].strip("'\"").rstrip("/") or "/"
    if not (os.path.isdir(run_dir) and os.path.lexists(os.path.join(run_dir, ".hydra"))):
        return argv  # a folder of checkpoints (the original code's): the trainer resumes from it in a new folder
    if not os.path.lexists(os.path.join(run_dir, ".hydra", "overrides.yaml")):
        raise ArgvError(f"resume={run_dir}: its .hydra/ holds no overrides.yaml (Hydra writes one in every run "
                        "folder), so the run's settings are unknown; start a new run from its checkpoint with "
                        f"resume={os.path.join(run_dir, 'checkpoints', 'epoch-last.pth')} and the run's settings")
    if any(a in ("-m", "--multirun") for a in argv):
        raise ArgvError(f"resume={run_dir} continues one run: drop -m/--multirun")
    check_folder(run_dir, in_place=HYDRA_IN_PLACE)
    saved = saved_overrides(run_dir)
    check_composes(saved, run_dir)
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
