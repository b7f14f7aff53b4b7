"""liif.list_models / create_model: the presets of liif/models/presets.py, the very ones `python run.py
model=<name>` composes (one source, no second copy in conf/), and inference without Hydra & co."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

import liif
from conftest import FRAMEWORKS, ROOT, compose
from liif import backends
from liif.models import presets
from liif.errors import BadInput, CheckpointError, UnknownName

TINY = {"encoder_spec": {"args": {"n_resblocks": 1, "n_feats": 8}}, "imnet_spec": {"args": {"hidden_list": [8]}}}


def test_list_models_is_hydras_model_group():
    assert liif.list_models() == presets.names() and "rdn_liif" in liif.list_models()
    assert not (ROOT / "conf" / "model").exists()  # no second copy of the presets
    for name in liif.list_models():
        assert OmegaConf.to_container(compose(f"model={name}").model, resolve=True) == presets.spec(name), name


@pytest.mark.slow
def test_hydra_still_swaps_the_parts_of_a_preset():
    cfg = compose("model=edsr_baseline_liif_c", "model/encoder=rdn")
    assert cfg.model.args.encoder_spec.name == "rdn" and cfg.model.args.cell_decode is False
    assert compose("model=rdn_liif", "model/decoder=metasr").model.name == "metasr"


def test_presets_are_the_original_checkpoints_models(fixtures_dir):
    """The original's own configs (their args, in the fixtures' checkpoints) are our presets."""
    for preset, variant in [("edsr_baseline_liif", ""), ("edsr_baseline_liif_c", "-c"), ("edsr_baseline_liif_u", "-u"),
                            ("edsr_baseline_liif_e", "-e"), ("edsr_baseline_liif_d", "-d"), ("edsr_baseline_metasr", "metasr")]:
        name = "ckpt_edsr-baseline-metasr.pth" if variant == "metasr" else f"ckpt_edsr-baseline-liif{variant}.pth"
        liif.create_model(preset, pretrained_path=str(fixtures_dir / name), device="cpu")  # raises if another model


def test_create_model_pretrained_equals_load_model(fixtures_dir):
    path = str(fixtures_dir / "ckpt_edsr-baseline-liif-c.pth")
    a = liif.create_model("edsr_baseline_liif_c", pretrained_path=path, device="cpu")
    b = liif.load_model(path, device="cpu")
    rng = np.random.default_rng(0)
    inp = rng.uniform(-1, 1, (1, 3, 10, 12)).astype(np.float32)
    coord = rng.uniform(-1, 1, (1, 50, 2)).astype(np.float32)
    cell = np.full((1, 50, 2), 0.05, np.float32)
    np.testing.assert_array_equal(a.query(inp, coord, cell), b.query(inp, coord, cell))
    import torch
    assert isinstance(a.net, torch.nn.Module)  # the network itself
    with pytest.raises(CheckpointError, match="holds another model than 'edsr_baseline_liif'"):
        liif.create_model("edsr_baseline_liif", pretrained_path=path, device="cpu")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fresh_weights_are_seeded_and_the_same_on_both_frameworks(framework):
    backend, T = backends.get(framework), backends.get("torch")
    ours = backend.state_dict_numpy(liif.create_model("edsr_baseline_liif", framework=framework, device="cpu", **TINY).net)
    torch_ = T.state_dict_numpy(liif.create_model("edsr_baseline_liif", device="cpu", **TINY).net)
    other = T.state_dict_numpy(liif.create_model("edsr_baseline_liif", device="cpu", seed=1, **TINY).net)
    assert ours.keys() == torch_.keys() and ours["imnet.layers.0.weight"].shape == (8, 8 * 9 + 4)
    for k in ours:
        np.testing.assert_array_equal(ours[k], torch_[k], err_msg=k)
    assert not np.array_equal(other["imnet.layers.0.weight"], torch_["imnet.layers.0.weight"])


def test_bad_names_and_overrides_are_named():
    with pytest.raises(UnknownName, match="unknown model 'rdn_lif'; choose one of: .*rdn_liif"):
        liif.create_model("rdn_lif")
    with pytest.raises(BadInput, match="unknown argument 'local_ensembl' of model 'liif'"):
        liif.create_model("edsr_baseline_liif", local_ensembl=False)
    with pytest.raises(BadInput, match="argument 'n_feats' of 'edsr-baseline' .* must be int"):
        liif.create_model("edsr_baseline_liif", encoder_spec={"args": {"n_feats": "64"}})


@pytest.mark.slow
def test_inference_imports_neither_hydra_nor_the_training_and_report_libraries(tmp_path, fixtures_dir):
    script = f"""
import json, sys
import numpy as np
import liif
m = liif.load_model({str(fixtures_dir / 'ckpt_edsr-baseline-liif.pth')!r}, device="cpu")
sr = m.upscale(np.zeros((6, 5, 3), np.uint8), (12, 10))
n = liif.create_model("edsr_baseline_liif", device="cpu", encoder_spec={{"args": {{"n_resblocks": 1}}}})
print(json.dumps({{"shape": list(sr.shape), "modules": sorted(sys.modules)}}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["shape"] == [12, 10, 3]
    heavy = {m.split(".")[0] for m in out["modules"]} & {"hydra", "omegaconf", "matplotlib", "tensorboardX", "skimage", "yaml"}
    assert not heavy, heavy
