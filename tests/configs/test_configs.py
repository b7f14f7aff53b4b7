"""Every config composes, and each model preset builds the model the paper names."""
import pytest

from conftest import ROOT, compose, slow_case
from liif import backends
from liif.models import presets, registry

MODEL_PRESETS = presets.names()  # Hydra's `model` group (liif/models/presets.py)
PAPER_PRESETS = ["edsr_baseline_liif", "edsr_baseline_metasr", "rdn_liif", "rdn_metasr", "edsr_baseline_liif_c",
                 "edsr_baseline_liif_u", "edsr_baseline_liif_e", "edsr_baseline_liif_d"]
# parameter counts of the original code (tests/fixtures/official_liif/manifest.json)
PARAMS = {"edsr_baseline_liif": 1567323, "edsr_baseline_liif_c": 1566811, "edsr_baseline_liif_u": 1436251,
          "edsr_baseline_liif_e": 1567323, "edsr_baseline_liif_d": 1435739, "edsr_baseline_metasr": 1665560,
          "rdn_liif": 22320835,
          "edsr_baseline_lte": 1714267}  # the LTE authors' code (tests/fixtures/official_lte/manifest.json)


def test_paper_presets_exist():
    assert set(PAPER_PRESETS) <= set(MODEL_PRESETS)


@pytest.mark.parametrize("preset", MODEL_PRESETS)
def test_preset_composes_and_builds(preset):
    from omegaconf import OmegaConf
    cfg = compose(f"model={preset}")
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert spec["name"] in registry.names()
    if preset.startswith("rdn"):
        return  # 22M parameters: built once below
    net = registry.make(spec, backends.get("torch"))
    if preset in PARAMS:
        assert sum(p.numel() for p in net.parameters()) == PARAMS[preset]


def test_rdn_liif_has_the_original_parameter_count():
    from omegaconf import OmegaConf
    net = registry.make(OmegaConf.to_container(compose("model=rdn_liif").model), backends.get("torch"))
    assert sum(p.numel() for p in net.parameters()) == PARAMS["rdn_liif"]


def test_ablation_flags_reach_the_constructor():
    args = compose("model=edsr_baseline_liif_e").model.args
    assert args.local_ensemble is False and args.feat_unfold and args.cell_decode
    assert compose("model=edsr_baseline_liif_d").model.args.imnet_spec.args.hidden_list == [256, 256]


def test_encoder_group_swaps_the_encoder():
    cfg = compose("model=edsr_baseline_metasr", "model/encoder=rdn")
    assert cfg.model.name == "metasr" and cfg.model.args.encoder_spec.name == "rdn"


def test_wrong_names_get_hydra_clear_error():
    from hydra.errors import MissingConfigException
    with pytest.raises(MissingConfigException, match="model"):
        compose("model=no_such_model")


@pytest.mark.parametrize("group", [slow_case("dataset"), "train", slow_case("scale"), "framework", slow_case("task")])
def test_every_option_composes(group):
    for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
        extra = ["dataset.path=/tmp"] if option == "folder" else []
        compose(f"{group}={option}", *extra)


def test_glob_patterns_are_rewritten_for_config_groups():
    import importlib.util
    spec = importlib.util.spec_from_file_location("run", ROOT / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    assert run.expand_group_globs(["-m", "model=edsr_baseline_liif_*", "seed=1", "model=glob(x*)"]) == \
        ["-m", "model=glob(edsr_baseline_liif_*)", "seed=1", "model=glob(x*)"]
