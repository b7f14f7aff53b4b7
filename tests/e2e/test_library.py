"""The library without Hydra: typed configs checked on construction, and a training plus its test
run from plain Python (explicit arguments; that the library never imports Hydra is the contract
tests/project/test_architecture.py checks) that gives exactly what
`python run.py` gives with the same settings. And the CLI side of the typed configs: Hydra
rejects a wrong type by name (an unknown key: tests/cli/test_argv.py), a value out of range is one
line, and both happen before any work (no run folder)."""
import json
import re
import sys

import numpy as np
import pytest

from conftest import compose, noise_photos, run_cli, run_task_with_overrides, typed
from liif.config import RunConfig, ScaleConfig, TaskConfig, TestSetConfig, TrainConfig, unknown_setting
from liif.errors import BadInput, ConfigError

SETTINGS = dict(epochs=2, batch_size=2, inp_size=8, sample_q=16, lr=1e-3, milestones=[1], max_steps_per_epoch=3,
                epoch_val=1, val_batch_size=2, num_workers=0)
CLI_SETTINGS = [f"train.{k}={v}".replace(" ", "") for k, v in SETTINGS.items()] + [
    "model=edsr_baseline_liif", "model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
    "model.args.imnet_spec.args.hidden_list=[16]", "scales=[2,3]", "device=cpu", "framework.threads=1",
    "dataset.train.repeat=4", "dataset.val.repeat=1"]


@pytest.fixture
def folder(tmp_path):
    return noise_photos(tmp_path / "imgs")


def make_hydra_unimportable(monkeypatch):
    """While the test runs, any import of Hydra or OmegaConf fails: the modules pytest already holds are
    hidden (a None entry in sys.modules makes `import` raise). Whether the library imports them at
    all is the import contracts' question (tests/project/test_architecture.py)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("hydra", "omegaconf")] + ["hydra", "omegaconf"]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.slow
def test_training_and_evaluation_from_plain_python_match_the_cli(tmp_path, folder, monkeypatch):
    spec = typed(*CLI_SETTINGS, "dataset=folder", f"dataset.path={folder}").model.spec()  # the preset, shrunk
    cli = run_cli(*CLI_SETTINGS, "dataset=folder", f"dataset.path={folder}", f"hydra.run.dir={tmp_path / 'cli'}")
    assert cli.returncode == 0, cli.stderr[-3000:]
    theirs = json.loads((tmp_path / "cli" / "metrics.json").read_text())

    make_hydra_unimportable(monkeypatch)
    from liif.config import DatasetConfig, FrameworkConfig, SplitConfig
    from liif.data import make_train_sets
    from liif.evaluation.evaluate import evaluate
    from liif.training.trainer import Trainer
    train = TrainConfig(**SETTINGS)
    dataset = DatasetConfig(name="mine", train=SplitConfig(root=str(folder), repeat=4, cache="in_memory"),
                            val=SplitConfig(root=str(folder), repeat=1, cache="in_memory"))
    train_set, val_set = make_train_sets(dataset, train, ScaleConfig(min=1, max=4))
    trainer = Trainer(spec, train_set, str(tmp_path / "py"), train=train, val_set=val_set, device="cpu",
                      framework=FrameworkConfig(threads=1))
    assert trainer.fit() is None
    records = evaluate(trainer.as_model(), [TestSetConfig(name="folder", hr=str(folder), scales=[2, 3])])
    assert (tmp_path / "py" / "checkpoints" / "epoch-last.pth").is_file()

    assert len(trainer.history) == 2 and np.isfinite([h["loss"] for h in trainer.history]).all()
    assert [h["loss"] for h in trainer.history] == [h["loss"] for h in theirs["train"]["history"]]
    assert [h["val_psnr"] for h in trainer.history] == [h["val_psnr"] for h in theirs["train"]["history"]]
    assert [(x["scale"], x["psnr"]) for x in records] == [(x["scale"], x["psnr"]) for x in theirs["records"]]


@pytest.mark.parametrize("make, key", [
    (lambda: TrainConfig(batch_size=-4), "train.batch_size=-4"),
    (lambda: TrainConfig(epochs=0), "train.epochs=0"),
    (lambda: TrainConfig(lr=float("nan")), "train.lr=nan"),
    (lambda: TrainConfig(num_workers=-1), "train.num_workers=-1"),
    (lambda: TrainConfig(milestones=[0]), "train.milestones=[0]"),
    (lambda: ScaleConfig(min=3, max=2), "impossible scale range"),
    (lambda: TestSetConfig(name="x", hr="/x", scales=[2, 0]), "positive integers"),
    (lambda: RunConfig(eval_bsize=-1), "eval_bsize=-1"),
    (lambda: RunConfig(seed=-1), "seed=-1"),
    (lambda: TaskConfig(name="tset"), "unknown task 'tset'; choose one of: train, test, demo, report, serve"),
    (lambda: TaskConfig(name="serve", downscale=1), "task.downscale must be an integer >= 2 (or null), got 1"),
    (lambda: TaskConfig(name="serve", max_viewport=0), "task.max_viewport=0 must be a positive integer"),
    (lambda: TaskConfig(name="serve", cache_mb=-1), "task.cache_mb=-1 must be a positive number"),
    (lambda: RunConfig(task=TaskConfig(name="test")), "task=test needs checkpoint=PATH"),
    (lambda: RunConfig(task=TaskConfig(name="demo"), checkpoint="c.pth", size=[8, 8], output="o.png"),
     "task=demo needs input="),
    (lambda: RunConfig(task=TaskConfig(name="report")), "task=report needs dir="),
    (lambda: RunConfig(task=TaskConfig(name="serve"), checkpoint=[]), "task=serve needs checkpoint=CKPT"),
])
def test_typed_configs_check_their_ranges_once_built(make, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        make()


def test_a_demo_size_is_checked_and_made_integers_once_built():
    demo = dict(task=TaskConfig(name="demo"), checkpoint="c.pth", input="i.png", output="o.png")
    assert RunConfig(size=[4.0, 7], **demo).size == [4, 7]
    with pytest.raises(BadInput, match="size must be two positive integers"):
        RunConfig(size=[0, 7], **demo)


@pytest.mark.parametrize("settings, message", [
    ({"train": {"epoch": 3}}, "unknown setting 'train.epoch': did you mean 'train.epochs'?"),
    ({"modle": "rdn_liif"}, "unknown setting 'modle': did you mean 'model'?"),
    ({"dataset": {"train": {"rpeat": 2}}}, "unknown setting 'dataset.train.rpeat': did you mean 'dataset.train.repeat'?"),
    ({"infer": {"tiles": 3}}, "unknown setting 'infer.tiles': did you mean 'infer.tile'?"),
    ({"zzz": 1}, "unknown setting 'zzz': (`python run.py --cfg job` prints every setting)"),
])
def test_an_unknown_setting_is_named_with_the_nearest_valid_one(settings, message):
    assert message in unknown_setting(settings)


def test_known_settings_and_free_form_nodes_pass_the_key_check():
    assert unknown_setting({"train": {"epochs": 3}, "model": {"name": "liif", "args": {"anything": {"goes": 1}}},
                            "dataset": {"train": None, "test": [{"name": "x"}]}, "paper": {"row": "LIIF"}}) is None
    assert unknown_setting({"model/encoder": None}, also={"model/encoder"}) is None  # a config group of the CLI
    assert "did you mean 'model/encoder'" in unknown_setting({"model/encodr": None}, also={"model/encoder"})


@pytest.mark.slow
def test_hydra_rejects_a_wrong_type_by_name_before_any_work(tmp_path):
    r = run_cli("scales=[2.5]", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert r.returncode == 1 and "scales[0]" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, named", [("train.batch_size=abc", "train.batch_size"),
                                             ("framework.compile=maybe", "framework.compile")])
def test_the_schema_refuses_a_wrong_type_by_name(override, named):
    """While Hydra composes (the CLI then prints its message, exit 1: the test above)."""
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException, match=re.escape(named)):
        compose(override)


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=-2", "train.batch_size=-2 must be a positive integer"),
    ("train.epochs=-1", "train.epochs=-1 must be a positive integer"),
    ("eval_bsize=-5", "eval_bsize=-5 must be a positive integer"),
    ("train.lr=0", "train.lr=0.0 must be a positive number"),
    ("dataset.path=null", "dataset=folder needs dataset.path=DIR"),
])
def test_a_setting_out_of_range_is_one_line_before_any_work(folder_base, tmp_path, override, message):
    status, err = run_task_with_overrides(folder_base, override, f"output_dir={tmp_path / 'run'}")
    assert status == 2 and err.startswith("error: ") and message in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def folder_base():
    return compose("dataset=folder", "dataset.path=/nonexistent")


def _subset(spec, expected):
    """`spec`'s dataset and wrapper restricted to the keys the original config sets."""
    return {part: {"name": spec[part]["name"], "args": {k: spec[part]["args"][k] for k in expected[part]["args"]}}
            for part in ("dataset", "wrapper")}


@pytest.mark.parametrize("experiment, split, expected", [
    # the original code's train-div2k/train_edsr-baseline-liif.yaml
    ("ablation_liif", "train", {"dataset": {"name": "image-folder", "args": {"repeat": 20, "cache": "in_memory"}},
                                "wrapper": {"name": "sr-implicit-downsampled", "args": {
                                    "inp_size": 48, "scale_max": 4, "augment": True, "sample_q": 2304}}}),
    ("ablation_liif", "val", {"dataset": {"name": "image-folder", "args": {"first_k": 10, "repeat": 160}},
                              "wrapper": {"name": "sr-implicit-downsampled", "args": {
                                  "inp_size": 48, "scale_max": 4, "augment": False, "sample_q": 2304}}}),
    # train-div2k/train_edsr-baseline-x2.yaml
    ("table1_edsr_baseline", "train", {"dataset": {"name": "paired-image-folders", "args": {"repeat": 20}},
                                       "wrapper": {"name": "sr-implicit-paired", "args": {"inp_size": 48,
                                                                                           "augment": True}}}),
    # train-celebAHQ/train_celebAHQ-32-256_liif.yaml
    ("table4_celebahq_32_256_liif", "train", {
        "dataset": {"name": "paired-image-folders", "args": {"split_key": "train", "cache": "bin"}},
        "wrapper": {"name": "sr-implicit-uniform-varied", "args": {"size_min": 32, "size_max": 256, "sample_q": 1024,
                                                                   "augment": True}}}),
    ("table4_celebahq_32_256_liif", "val", {
        "dataset": {"name": "paired-image-folders", "args": {"split_key": "val", "first_k": 100}},
        "wrapper": {"name": "sr-implicit-paired", "args": {"sample_q": 1024}}}),
])
def test_dataset_configs_become_the_original_dataset_specs(experiment, split, expected):
    """The CLI's datasets are built from the same registry specs the original configs spell out."""
    from liif.data import split_spec
    config = typed(f"experiment={experiment}")
    node = getattr(config.dataset, split)
    spec = split_spec(node, config.train, config.scale, augment=config.train.augment and split == "train")
    assert _subset(spec, expected) == expected
    roots = [v for k, v in spec["dataset"]["args"].items() if k.startswith("root_path")]
    assert roots and all(r.startswith(config.paths.data_dir) for r in roots)
