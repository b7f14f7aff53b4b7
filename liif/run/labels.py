"""The model name a run is labelled with (metrics.json `model`, the run folder's name).

A run is labelled with the model it really used. For training that is the config's `model=`
choice; for `task=test`/`task=demo` it is the CHECKPOINT's model: testing a MetaSR checkpoint
with the default config must not be filed under `edsr_baseline_liif` (the sweep report would put
it in the wrong row). A checkpoint's model is named like the presets in conf/model/ from its
structure: encoder + decoder + ablation suffixes (`edsr_baseline_metasr`, `rdn_liif`,
`edsr_baseline_liif_c`, fixed-scale `rdn`).

The run folder is named before any task code runs, so `conf/config.yaml` names it through the
OmegaConf resolver `liif_model_label`: `label_for_run`, registered by the command line
(liif.cli.main.register_run_name_resolver), which hands it plain values.
"""
import os

_specs = {}  # (path, size, mtime_ns) -> the checkpoint's model spec: the resolver runs more than once


def preset_name(spec):
    """The conf/model preset name for a model spec (also for specs no preset has)."""
    if not isinstance(spec, dict) or not spec.get("name"):
        return None
    args = spec.get("args") or {}
    encoder = args.get("encoder_spec") or {}
    if not encoder.get("name"):
        return str(spec["name"])
    base = str(encoder["name"]).replace("-", "_")
    if spec["name"] == "metasr":
        return f"{base}_metasr"
    if spec["name"] != "liif":
        return f"{base}_{spec['name']}"
    if not args.get("imnet_spec"):
        return base  # fixed-scale: the encoder upsamples
    name = f"{base}_liif"
    for flag, suffix in (("cell_decode", "_c"), ("feat_unfold", "_u"), ("local_ensemble", "_e")):
        if args.get(flag, True) is False:
            name += suffix
    hidden = ((args["imnet_spec"].get("args") or {}).get("hidden_list"))
    if hidden is not None and len(hidden) != 4:  # the paper's MLP has 4 hidden layers; -d has 2
        name += "_d"
    return name


def model_label(choice, used_spec, config_spec):
    """The `model=` choice when the model used is the config's; else the used model's preset name."""
    if used_spec is None or choice is None:
        return choice or (used_spec or {}).get("name")
    used = preset_name(used_spec)
    return choice if used == preset_name(_plain(config_spec)) else used


def checkpoint_spec(path):
    """The model spec inside a checkpoint, or None when it cannot be read (the task says why later)."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _specs:
        from liif.errors import CheckpointError
        from liif.models import checkpoint
        try:
            _specs[key] = checkpoint.model_spec(checkpoint.read(path), path)  # NumPy only, nothing runs
        except CheckpointError:  # no label from it; the task reports the error
            _specs[key] = None
    return _specs[key]


def label_for_run(task, checkpoint_path, choice, config_spec=None):
    """What `run_name` defaults to (see the module docstring); `config_spec`: the config's model spec (a dict)."""
    if task not in ("test", "demo") or not checkpoint_path:
        return choice
    return model_label(choice, checkpoint_spec(str(checkpoint_path)), config_spec)


def _plain(spec):
    if hasattr(spec, "spec") and callable(spec.spec):  # a typed liif.config.ModelConfig
        return spec.spec()
    return spec
