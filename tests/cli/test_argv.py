"""The command line before Hydra (liif/cli/argv.py): `resume=<run dir>` alone continues that run in
its own folder, with the overrides it was started with; unsafe changes are refused with the
reason; a misspelt key names the nearest valid one instead of Hydra's `+key=` advice."""
import json
import re
import signal

import pytest
import yaml

from conftest import ROOT, run_cli, sigterm_after_first_checkpoint, typed
from liif.cli.argv import ArgvError, check_keys, resume_in_place

CONF = str(ROOT / "conf")


def run_folder(path, overrides, task="train"):
    """A run folder as Hydra and the trainer leave it (only what resume= reads)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "config.yaml").write_text(yaml.safe_dump({"task": {"name": task}}))
    return path


@pytest.mark.slow
def test_resume_dir_restores_the_runs_overrides_and_its_folder(tmp_path):
    run = run_folder(tmp_path / "run", ["model=rdn_liif", "train.epochs=5", "resume=true"])
    assert resume_in_place([f"resume={run}"]) == ["model=rdn_liif", "train.epochs=5", f"hydra.run.dir={run}",
                                                  "resume=true"]
    # safe changes are kept after the saved ones (they win); repeating a saved override is fine
    assert resume_in_place([f"resume={run}/", "model=rdn_liif", "train.epochs=9", "device=cpu"]) == [
        "model=rdn_liif", "train.epochs=5", "train.epochs=9", "device=cpu", f"hydra.run.dir={run}", "resume=true"]
    odd = run_folder(tmp_path / "a b,c", ["seed=1"])
    assert resume_in_place([f"resume={odd}"])[1] == f"hydra.run.dir='{odd}'"  # quoted for Hydra's grammar


@pytest.mark.parametrize("override, reason", [
    ("model=edsr_baseline_liif", "architecture"), ("model.args.encoder_spec.args.n_feats=8", "architecture"),
    ("model/encoder=rdn", "architecture"), ("dataset=div2k", "data"), ("train.lr=1e-3", "optimisation"),
    ("seed=3", "random draws"), ("experiment=ablation_c", "experiment"), ("hydra.run.dir=/x", "that folder")])
def test_resume_refuses_what_would_change_the_run_and_says_why(tmp_path, override, reason):
    run = run_folder(tmp_path / "run", ["model=rdn_liif"])
    with pytest.raises(ArgvError, match=reason) as e:
        resume_in_place([f"resume={run}", override])
    assert f"python run.py model=rdn_liif {override}" in str(e.value)  # how to start a new run with it


def test_resume_of_a_test_run_or_in_a_sweep_is_refused(tmp_path):
    with pytest.raises(ArgvError, match="task=test run"):
        resume_in_place([f"resume={run_folder(tmp_path / 't', ['task=test'], task='test')}"])
    with pytest.raises(ArgvError, match="drop -m"):
        resume_in_place(["-m", f"resume={run_folder(tmp_path / 'r', [])}"])


def test_other_resume_forms_are_left_to_the_trainer(tmp_path):
    for argv in (["resume=true"], [f"resume={tmp_path}/ckpt.pth"], [f"resume={tmp_path}"], ["seed=1"]):
        assert resume_in_place(argv) == argv  # tmp_path has no .hydra/: the old meaning


@pytest.mark.parametrize("arg, nearest", [("modle=rdn_liif", "model"), ("train.epoch=3", "train.epochs"),
                                          ("framework.thread=1", "framework.threads"),
                                          ("model/encodr=rdn", "model/encoder"), ("datset=div2k", "dataset"),
                                          ("dataset.train.rpeat=2", "dataset.train.repeat")])
def test_a_misspelt_key_names_the_nearest_valid_one(arg, nearest):
    with pytest.raises(ArgvError, match=f"did you mean '{nearest}'"):
        check_keys([arg], CONF)


def test_valid_keys_pass_the_check():
    check_keys(["-m", "model=rdn_liif", "model.args.encoder_spec.args.n_feats=8", "dataset.train.repeat=2",
                "train.epochs=3", "scales=[2,3]", "hydra.run.dir=x", "hydra/launcher=parallel", "+anything=1",
                "experiment=glob(ablation_*)", "table=table1", "profile=smoke", "paths.data_dir=/d", "--cfg", "job"],
               CONF)


@pytest.mark.parametrize("arg, words", [("+train.typo=1", "unknown setting 'train.typo'"),
                                        ("+infer.tiles=3", "did you mean 'infer.tile'"),
                                        ("+typo=1", "unknown setting 'typo'")])
def test_a_key_added_with_plus_to_a_typed_node_is_refused(arg, words):
    """`+` makes Hydra add any key, even to a node the schema types (liif/config.py): refused by name
    before any work, instead of being ignored."""
    from liif.errors import ConfigError
    with pytest.raises(ConfigError, match=re.escape(words)):
        typed(arg)
    assert typed("+model.args.extra=1").model.args["extra"] == 1  # free-form: anything goes (checked at build)


@pytest.mark.slow
def test_a_typo_through_the_cli_is_one_line_without_hydras_advice(tmp_path):
    r = run_cli("modle=rdn_liif", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "did you mean 'model'" in r.stderr
    assert "+modle" not in r.stderr and not (tmp_path / "outputs").exists()


TINY = ["model=edsr_baseline_liif_c",  # not the default model: its overrides must come back on resume
        "model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=3", "train.max_steps_per_epoch=20",
        "train.batch_size=2", "train.inp_size=8", "train.sample_q=16", "train.milestones=[2]", "dataset.val=null",
        "dataset=folder", "dataset.train.repeat=20", "scales=[2]", "device=cpu", "framework.threads=1"]


@pytest.mark.slow
def test_sigterm_then_resume_dir_alone_continues_a_non_default_model_in_the_same_folder(tmp_path):
    """The CLI's resume, end to end: a training SIGTERMed from outside stops cleanly (exit 143, no
    traceback, metrics.json 'interrupted') and prints the command that continues it; that command,
    `resume=<run dir>` alone, restores the run's own overrides in its own folder and ends as the
    uninterrupted run, bit for bit. (Where in an epoch a resume starts: tests/unit/training/test_trainer.py.)"""
    from conftest import photo
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        photo(images / f"{i}.png")
    args = [*TINY, f"dataset.path={images}"]
    full = run_cli(*args, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]

    cut = tmp_path / "cut"
    returncode, err = sigterm_after_first_checkpoint(args, cut, cwd=tmp_path)
    assert returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and f"python run.py resume={cut}" in err  # the hint printed is the command that works
    interrupted = json.loads((cut / "metrics.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["train"]["epochs_done"] < 3

    refused = run_cli(f"resume={cut}", "model.args.encoder_spec.args.n_feats=16", cwd=tmp_path, timeout=120)
    assert refused.returncode == 2 and "architecture" in refused.stderr and "Traceback" not in refused.stderr

    resumed = run_cli(f"resume={cut}", cwd=tmp_path)  # nothing else: the run's own overrides come back
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # no new folder: the run continued in its own
    metrics = lambda d: json.loads((d / "metrics.json").read_text())  # noqa: E731
    cut_m, full_m = metrics(cut), metrics(tmp_path / "full")
    assert cut_m["status"] == "ok" and cut_m["model"] == "edsr_baseline_liif_c"
    assert [r["loss"] for r in cut_m["train"]["history"]] == [r["loss"] for r in full_m["train"]["history"]]
    assert [r["psnr"] for r in cut_m["records"]] == [r["psnr"] for r in full_m["records"]]

    more = run_cli(f"resume={cut}", "train.epochs=4", "train.max_steps_per_epoch=3", cwd=tmp_path)
    assert more.returncode == 2 and "train.max_steps_per_epoch" in more.stderr  # refused: changes the steps
    more = run_cli(f"resume={cut}", "train.epochs=4", cwd=tmp_path)  # a safe change: more epochs
    assert more.returncode == 0, more.stderr[-2000:]
    assert len(metrics(cut)["train"]["history"]) == 4 and not (tmp_path / "outputs").exists()


def test_every_task_the_typed_config_accepts_is_run_by_the_cli():
    from liif.cli.main import TASKS as MODULES
    from liif.config import TASKS
    assert set(MODULES) == set(TASKS)
