"""The single entry point: `python run.py [task=train|test|demo] [group=option ...] [key=value ...]`.

Configs live in conf/ (see README); the model presets in liif/models/presets.py. Before Hydra parses
the command line:
- `python run.py -m experiment=ablation_*` works as typed: Hydra only understands
  `experiment=glob(ablation_*)`, so bare patterns for config groups are rewritten to that;
- `python run.py resume=<run dir>` becomes that run's own overrides plus
  `hydra.run.dir=<run dir> resume=true` (liif/cli/argv.py), so it continues in place; only the
  overrides that define a training run come back from the folder, which may be anyone's;
- a misspelt key (`modle=...`) is an error naming the nearest valid one (liif/cli/argv.py).
"""
import os
import sys

import hydra

from liif.cli.main import register_configs

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
register_configs()  # the config schema (liif/config.py) and the `model` groups (liif/models/presets.py) in Hydra's ConfigStore


def expand_group_globs(argv):
    """`group=pat*` -> `group=glob(pat*)` for the config groups in conf/."""
    groups = {d for d in os.listdir(CONF_DIR) if os.path.isdir(os.path.join(CONF_DIR, d))} | {"model"}
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in groups and "*" in value and not value.startswith("glob("):
            arg = f"{key}=glob({value})"
        out.append(arg)
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    from liif.cli.main import run_task
    return run_task(cfg)


def command_line(argv):
    """`argv` as Hydra is given it: globs for groups, `resume=<run dir>` rewritten, keys and numbers
    checked. A LiifError (one line for the user) for a misspelt key, a number no config can hold or a
    run folder that cannot be resumed."""
    from liif.cli.argv import check_keys, check_numbers, resume_in_place
    args = resume_in_place(expand_group_globs(argv))
    check_keys(args, CONF_DIR)
    check_numbers(args)
    return args


if __name__ == "__main__":
    from liif.errors import LiifError
    try:
        args = command_line(sys.argv[1:])
    except LiifError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0]] + args
    main()
