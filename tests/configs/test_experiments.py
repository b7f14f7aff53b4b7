"""Every experiment, table, profile and launcher preset composes, and says what the paper says."""
import fnmatch
import functools
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose, run_task_with_overrides
from liif.cli.main import register_model_presets
import liif.models  # noqa: F401  (registers the model names)
from liif import backends
from liif.report import paper
from liif.models import registry

CONF = ROOT / "conf"
register_model_presets()  # the model presets (compose_as_cli and the other direct compositions below)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TABLES = sorted(p.stem for p in (CONF / "table").glob("*.yaml"))
PROFILES = sorted(p.stem for p in (CONF / "profile").glob("*.yaml"))
FIXED_SCALE = {"table1_edsr_baseline": 2, "table1_edsr_baseline_x3": 3, "table1_edsr_baseline_x4": 4,
               "table2_rdn": 2, "table2_rdn_x3": 3, "table2_rdn_x4": 4}
ABLATION_FLAGS = {"ablation_liif": {}, "ablation_c": {"cell_decode": False}, "ablation_u": {"feat_unfold": False},
                  "ablation_e": {"local_ensemble": False}}
BENCHMARKS = ["Set5", "Set14", "B100", "Urban100"]
PREFIX = {1: "table1_", 2: "table2_", 3: "ablation_", 4: "table4_", "lte": "lte_"}  # paper table -> experiment names


def experiment_yaml(experiment):
    import yaml
    return yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())


def compose_experiment(experiment, *overrides):
    return compose_as_cli(f"experiment={experiment}", *overrides)


def paper_tag(experiment):
    """(table, row) of `experiment`, composed."""
    cfg = compose_as_cli(f"experiment={experiment}")
    return cfg.paper.table, cfg.paper.row


@functools.lru_cache(maxsize=None)
def compose_as_cli(*overrides):
    """Like conftest.compose, but keeps the experiment's own run_name (compose() forces 'test'). Each
    composition is made once for the module (a fraction of a second each, ~60 of them): read it, never
    change it."""
    from liif.cli.main import compose as cli_compose
    return cli_compose(["output_dir=unused", *overrides])


def build(cfg):
    return registry.make(OmegaConf.to_container(cfg.model, resolve=True), backends.get("torch"))


@pytest.mark.slow
def test_every_paper_row_has_an_experiment():
    expected = {"table1_edsr_baseline", "table1_edsr_baseline_metasr", "table1_edsr_baseline_liif", "table1_rdn_metasr",
                "table1_rdn_liif", "table2_rdn", "table2_rdn_metasr", "table2_rdn_liif", "ablation_liif", "ablation_c",
                "ablation_u", "ablation_e", "ablation_d", "ablation_x2", "ablation_x3", "ablation_x4",
                "table4_celebahq_64_128_liif", "table4_celebahq_64_128_upsample", "table4_celebahq_32_256_liif",
                "table4_celebahq_32_256_upsample"}
    assert expected <= set(EXPERIMENTS)
    tagged = set(map(paper_tag, EXPERIMENTS))
    for number, spec in paper.tables().items():
        for row in spec["rows"]:
            if row != "Bicubic":
                assert (number, row) in tagged, f"Table {number} row {row!r} has no experiment"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_its_paper_tag(experiment):
    cfg = compose_experiment(experiment)
    assert cfg.run_name == experiment
    assert cfg.paper.table in paper.tables()
    assert cfg.paper.row in paper.table(cfg.paper.table)["rows"], "the report could not find the paper's numbers"
    assert cfg.train.epochs in (1000, 200) and cfg.train.batch_size == 16  # the paper's recipe
    assert experiment.startswith(PREFIX[cfg.paper.table])
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert spec["name"] in registry.names()


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_smoke_profile_keeps_the_experiment_but_shrinks_it(experiment):
    plain, cfg = compose_experiment(experiment), compose_experiment(experiment, "profile=smoke")
    assert OmegaConf.to_container(cfg.paper) == OmegaConf.to_container(plain.paper)
    assert cfg.run_name == plain.run_name and cfg.scale == plain.scale and cfg.get("scales") == plain.get("scales")
    assert cfg.dataset.name == "sample", "the profile must win over the experiment's dataset"
    assert cfg.train.epochs == 1 and cfg.train.max_steps_per_epoch == 2 and cfg.train.inp_size == 16
    # the same model type and ablation switches, fewer parameters
    assert cfg.model.name == plain.model.name and cfg.model.args.encoder_spec.name == plain.model.args.encoder_spec.name
    for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
        assert cfg.model.args.get(flag) == plain.model.args.get(flag)
    if plain.model.args.get("imnet_spec"):
        assert len(cfg.model.args.imnet_spec.args.hidden_list) == len(plain.model.args.imnet_spec.args.hidden_list)
    n_params = sum(p.numel() for p in build(cfg).parameters())
    limit = 4e6 if plain.model.args.encoder_spec.name == "rdn" else 1.5e5
    assert n_params < limit, f"{experiment}: smoke model has {n_params} parameters"


@pytest.mark.slow
def test_ablations_inherit_from_ablation_liif():
    for name, flags in ABLATION_FLAGS.items():
        cfg = compose_as_cli(f"experiment={name}")
        assert cfg.paper.table == 3 and cfg.dataset.name == "div2k" and cfg.scale.min == 1 and cfg.scale.max == 4
        for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
            assert cfg.model.args[flag] == flags.get(flag, True)
    assert compose_as_cli("experiment=ablation_d").model.args.imnet_spec.args.hidden_list == [256, 256]
    for k in (2, 3, 4):
        cfg = compose_as_cli(f"experiment=ablation_x{k}")
        assert (cfg.scale.min, cfg.scale.max) == (k, k) and cfg.model.args.cell_decode
        assert cfg.paper.row == f"LIIF (x{k}-only)"


@pytest.mark.slow
@pytest.mark.parametrize("experiment,k", sorted(FIXED_SCALE.items()))
def test_fixed_scale_rows_train_and_test_at_their_scale(experiment, k):
    cfg = compose_as_cli(f"experiment={experiment}")
    assert cfg.model.args.encoder_spec.args.scale == k and not cfg.model.args.encoder_spec.args.no_upsampling
    assert (cfg.scale.min, cfg.scale.max) == (k, k) and list(cfg.scales) == [k]
    for node, split in ((cfg.dataset.train, "train"), (cfg.dataset.val, "valid")):  # the original's LR files
        assert node.wrapper == "sr-implicit-paired" and node.inp_size == 48 and node.sample_q is None
        assert node.lr_root.endswith(f"DIV2K/DIV2K_{split}_LR_bicubic/X{k}") and node.hr_root.endswith(f"DIV2K_{split}_HR")


@pytest.mark.slow
def test_fixed_scale_row_trains_on_the_lr_files(tmp_path):
    """table1_edsr_baseline_x3 end to end on a tiny DIV2K tree (the task in process): it reads
    DIV2K_*_LR_bicubic/X3, refuses an LR crop larger than the LR images, and says which folder is
    missing when that one is."""
    from PIL import Image
    from skimage import data
    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    for split, images in (("train", photos[:2]), ("valid", photos[2:])):
        for folder in (f"DIV2K_{split}_HR", f"DIV2K_{split}_LR_bicubic/X3"):
            (tmp_path / "DIV2K" / folder).mkdir(parents=True)
        for i, photo in enumerate(images):
            hr = Image.fromarray(np.ascontiguousarray(photo[:96, :120]))
            hr.save(tmp_path / "DIV2K" / f"DIV2K_{split}_HR" / f"{i:04d}.png")
            hr.resize((40, 32), Image.BICUBIC).save(tmp_path / "DIV2K" / f"DIV2K_{split}_LR_bicubic/X3" / f"{i:04d}x3.png")
    cfg = compose("experiment=table1_edsr_baseline_x3", f"paths.data_dir={tmp_path}", "model.args.encoder_spec.args.n_resblocks=1",
                  "model.args.encoder_spec.args.n_feats=8", "dataset.train.inp_size=8", "dataset.val.inp_size=8",
                  "dataset.val.repeat=1", "train.epochs=1", "train.epoch_val=1", "train.batch_size=2", "device=cpu",
                  "framework.threads=1")
    status, err = run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run'}")
    assert status == 0, err[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    [record] = metrics["records"]
    assert (record["scale"], record["lr_source"], record["n_images"]) == (3, "files", 1)
    assert metrics["train"]["steps"] == 20 and metrics["train"]["history"][0]["val_psnr"] is not None  # 2 images x repeat 20

    # an LR crop larger than the LR images (32x40) is refused up front, naming the file and the setting
    status, err = run_task_with_overrides(cfg, "dataset.train.inp_size=33", f"output_dir={tmp_path / 'run3'}")
    assert status == 2 and "0000x3.png is 32x40, smaller than the 33x33 LR crop" in err
    assert "dataset.train.inp_size" in err

    import shutil
    shutil.rmtree(tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic")
    status, err = run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run2'}")
    assert status == 2 and "DIV2K_train_LR_bicubic/X3" in err


@pytest.mark.slow
def test_table2_trains_on_div2k_and_tests_on_the_benchmarks():
    for name in ("table2_rdn", "table2_rdn_metasr", "table2_rdn_liif"):
        cfg = compose_as_cli(f"experiment={name}")
        assert (cfg.dataset.train.get("hr_root") or cfg.dataset.train.root).endswith("DIV2K/DIV2K_train_HR")
        assert [t.name for t in cfg.dataset.test] == BENCHMARKS
        assert all(list(t.scales) == [2, 3, 4, 6, 8] for t in cfg.dataset.test)


def test_lte_trains_on_div2k_and_tests_on_div2k_and_the_benchmarks():
    """LTE's Tables 1-2 from one training per row: DIV2K x2-x30 and the four benchmarks x2-x8."""
    cfg = compose("dataset=div2k_all")
    assert cfg.dataset.train.root.endswith("DIV2K/DIV2K_train_HR")
    assert [(t.name, t.protocol, list(t.scales)) for t in cfg.dataset.test] == \
        [("DIV2K", "div2k", [2, 3, 4, 6, 12, 18, 24, 30])] + [(b, "benchmark", [2, 3, 4, 6, 8]) for b in BENCHMARKS]
    spec = paper.table("lte")
    assert [t.name for t in cfg.dataset.test] == spec["sets"]
    assert all(list(t.scales) == paper.columns(spec, t.name) for t in cfg.dataset.test), "our columns are the paper's"
    for experiment, row, preset in (("lte_edsr_baseline", "EDSR-baseline-LTE", "edsr_baseline_lte"),
                                    ("lte_rdn", "RDN-LTE", "rdn_lte")):
        raw = experiment_yaml(experiment)
        assert raw["paper"] == {"table": "lte", "row": row} and raw["run_name"] == experiment
        assert {"override /model": preset} in raw["defaults"] and {"override /dataset": "div2k_all"} in raw["defaults"]
        assert "test" not in raw, "LTE's protocol is lte's default (test.cell_clip: null), not an override"


@pytest.mark.parametrize("experiment", ["lte_edsr_baseline", "lte_rdn"])
def test_lte_experiment_is_the_lte_model_with_liifs_recipe_and_its_published_protocol(experiment):
    cfg = compose_experiment(experiment)
    assert cfg.model.name == "lte" and cfg.dataset.name == "div2k_all"
    assert (cfg.scale.min, cfg.scale.max) == (1, 4) and cfg.train.epochs == 1000 and list(cfg.train.milestones) == [200, 400, 600, 800]
    from liif.evaluation import protocol
    assert cfg.test.cell_clip is None and protocol.cell_clip_for(cfg.model.name, cfg.test.cell_clip) == 4


def test_table4_is_config_only_and_cannot_silently_train_the_wrong_recipe():
    for name in ("table4_celebahq_64_128_liif", "table4_celebahq_32_256_upsample"):
        cfg = compose_as_cli(f"experiment={name}")
        assert cfg.dataset.train.wrapper == "sr-implicit-uniform-varied"
        assert cfg.dataset.train.root is None  # the paired folders are read, not a downsampled `root`
        assert cfg.train.epochs == 200 and list(cfg.train.milestones) == [100] and cfg.train.gamma == 0.1
    up = compose_as_cli("experiment=table4_celebahq_32_256_upsample")
    assert up.model.args.encoder_spec.args.scale == 8 and up.dataset.train.gt_resize == 256


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES)
def test_table_config_sweeps_exactly_its_experiments(table):
    from hydra.types import RunMode
    from liif.cli.main import compose as cli_compose
    cfg = cli_compose(["output_dir=unused", f"table={table}"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    listed = cfg.hydra.sweeper.params.experiment.split(",")
    assert set(listed) <= set(EXPERIMENTS)
    number = int(table[-1]) if table.startswith("table") else table  # table=table1 ... LIIF's; table=lte
    assert set(listed) == set(fnmatch.filter(EXPERIMENTS, PREFIX[number] + "*")), "the table and the glob select the same rows"
    assert {paper_tag(e)[0] for e in listed} == {number}


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_compose_alone_and_with_frameworks(profile):
    for framework in ("torch", "jittor"):
        assert compose(f"profile={profile}", f"framework={framework}").framework.name == framework


def test_every_encoder_and_liif_decoder_has_a_smoke_size():
    from liif.models.presets import ENCODERS
    for enc in ENCODERS:
        assert (CONF / "profile" / "encoder" / f"smoke_{enc}.yaml").is_file(), enc


def test_no_profile_changes_nothing():
    plain = compose_as_cli("experiment=ablation_d")
    assert plain.model.args.encoder_spec.args.n_feats == 64 and plain.dataset.name == "div2k"


def test_report_task_and_dir_key_compose():
    cfg = compose("task=report", "dir=/tmp/some_sweep")
    assert cfg.task.name == "report" and cfg.dir == "/tmp/some_sweep"


def test_report_callback_is_registered():
    from liif.cli.main import compose as cli_compose
    cfg = cli_compose(["output_dir=unused"], return_hydra_config=True)
    assert cfg.hydra.callbacks.report._target_ == "liif.cli.hydra_callbacks.ReportCallback"


@pytest.mark.parametrize("launcher,expected", [
    ("slurm", ["hydra_plugins.liif_launchers.SlurmLauncher", "max_num_timeout: 30", "signal_delay_s:", "gpus_per_node: 1", "tasks_per_node: 1", "timeout_min:",
               "cpus_per_task:", "mem_gb:", "partition:", "array_parallelism:"]),
    ("parallel", ["joblib_launcher.JoblibLauncher", "n_jobs: 2"]),
])
def test_launcher_presets(launcher, expected):
    """What `python run.py experiment=ablation_c hydra/launcher=<preset> --cfg hydra` prints of the launcher."""
    from liif.cli.main import compose as cli_compose
    plugin = {"slurm": "hydra_plugins.hydra_submitit_launcher", "parallel": "hydra_plugins.hydra_joblib_launcher"}
    pytest.importorskip(plugin[launcher], reason="pip install -e '.[cluster]'")
    cfg = cli_compose(["output_dir=unused", "experiment=ablation_c", f"hydra/launcher={launcher}"], return_hydra_config=True)
    printed = OmegaConf.to_yaml(cfg.hydra.launcher)
    for text in expected:
        assert text in printed, text
