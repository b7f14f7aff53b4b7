"""The model presets (the paper's models), in one place: `liif.create_model` builds them, and the
Hydra config group `model` (with its sub-groups `model/encoder`, `model/decoder`) is made from them
by the command line (liif.cli.main.register_model_presets: `python run.py model=rdn_liif
model/encoder=edsr_baseline` works as with YAML files).

A preset = a decoder + an encoder + overrides of their arguments, as the original's configs.
"""
import copy

ENCODERS = {  # the `encoder_spec` of a model
    "edsr_baseline": {"name": "edsr-baseline", "args": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1, "scale": 2,
                                                        "no_upsampling": True, "rgb_range": 1}},
    "edsr": {"name": "edsr", "args": {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1, "scale": 2,
                                      "no_upsampling": True, "rgb_range": 1}},
    "rdn": {"name": "rdn", "args": {"G0": 64, "RDNkSize": 3, "RDNconfig": "B", "scale": 2, "no_upsampling": True}},
}

DECODERS = {  # the model around the encoder (its `encoder_spec` is filled in)
    # LIIF; the flags are the paper's ablations (-e, -u, -c; -d shortens hidden_list)
    "liif": {"name": "liif", "args": {"imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}},
                                      "local_ensemble": True, "feat_unfold": True, "cell_decode": True}},
    # Meta-SR's meta-upscale module on the LIIF encoder (its MLP is fixed, as in the original)
    "metasr": {"name": "metasr", "args": {}},
    # LTE (Lee & Jin, CVPR 2022): LIIF's MLP (one layer fewer) on a local texture estimator; no flags
    "lte": {"name": "lte", "args": {"imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256]}},
                                    "hidden_dim": 256}},
    # no implicit decoder: the encoder upsamples by a fixed scale (the paper's fixed-scale baselines);
    # queries read the upsampled image at the nearest pixel
    "upsample": {"name": "liif", "args": {}},
}

PRESETS = {  # name -> (decoder, encoder, overrides of the composed spec's args)
    "edsr_baseline_liif": ("liif", "edsr_baseline", {}),                      # Table 1, Table 3 'LIIF'
    "edsr_baseline_liif_c": ("liif", "edsr_baseline", {"cell_decode": False}),   # LIIF(-c), Table 3
    "edsr_baseline_liif_u": ("liif", "edsr_baseline", {"feat_unfold": False}),   # LIIF(-u), Table 3
    "edsr_baseline_liif_e": ("liif", "edsr_baseline", {"local_ensemble": False}),  # LIIF(-e), Table 3
    "edsr_baseline_liif_d": ("liif", "edsr_baseline", {"imnet_spec": {"args": {"hidden_list": [256, 256]}}}),  # LIIF(-d)
    "edsr_baseline_metasr": ("metasr", "edsr_baseline", {}),                  # Table 1
    "edsr_liif": ("liif", "edsr", {}),                                        # the full EDSR encoder
    "rdn_liif": ("liif", "rdn", {}),                                          # Tables 1, 2
    "rdn_metasr": ("metasr", "rdn", {}),                                      # Tables 1, 2
    "edsr_baseline_lte": ("lte", "edsr_baseline", {}),                        # LTE's Table 1
    "edsr_lte": ("lte", "edsr", {}),                                          # LTE with the full EDSR encoder
    "rdn_lte": ("lte", "rdn", {}),                                            # LTE's Tables 1, 2
    # fixed-scale baselines (Tables 1, 2); the scale: encoder_spec.args.scale
    "edsr_baseline": ("upsample", "edsr_baseline", {"encoder_spec": {"args": {"no_upsampling": False}}}),
    "rdn": ("upsample", "rdn", {"encoder_spec": {"args": {"no_upsampling": False}}}),
}


def names():
    return sorted(PRESETS)


def spec(name):
    """The preset's model spec {'name', 'args'} (a fresh copy), as `python run.py model=<name>` composes it."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset '{name}'; known: {', '.join(names())}")
    decoder, encoder, overrides = PRESETS[name]
    out = copy.deepcopy(DECODERS[decoder])
    out["args"] = {"encoder_spec": copy.deepcopy(ENCODERS[encoder]), **out["args"]}
    merge(out["args"], overrides)
    return out


def merge(base, update):
    """`update` merged into `base` in place, dicts recursively (Hydra's merge for these configs)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base

