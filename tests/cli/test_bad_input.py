"""Bad input: one clear line (or the expected layout), exit status 2, no traceback. In process
(`run_task_with_overrides`: the CLI's path after Hydra's composition, each config composed once),
through the CLI (a child of the CLI server) where Hydra itself refuses the value.
docs/reliability.md lists the same cases."""
import json
import os
import subprocess

import pytest

from conftest import compose, photo, run_cli, run_task_with_overrides
from liif.cli.argv import ArgvError, check_numbers

TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.epochs=1", "train.max_steps_per_epoch=2",
        "train.batch_size=2", "train.inp_size=8", "train.sample_q=16", "dataset.val=null", "scales=[2]",
        "device=cpu", "framework.threads=1"]


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        photo(d / f"{i}.png")
    return d


@pytest.fixture(scope="module")
def folder_cfg():
    """`python run.py dataset=folder` with a tiny model, composed once (dataset.path is set per test)."""
    return compose("dataset=folder", "dataset.path=unset", *TINY)


def fails_cleanly(result, *fragments):
    status, err = result
    assert status == 2, (status, err[-2000:])
    assert "Traceback" not in err, err
    assert err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def train(cfg, tmp_path, *args):
    """The train task on `cfg` with `args` (overrides), in tmp_path/run; returns (exit status, stderr)."""
    return run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}", *args)


def test_missing_data_folder(folder_cfg, tmp_path):
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={tmp_path / 'nope'}"), "not found", "nope/*.png")


def test_empty_data_folder(folder_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={tmp_path / 'empty'}"), "no images")


def test_div2k_not_in_its_layout_prints_the_layout(tmp_path):
    fails_cleanly(train(compose("dataset=div2k", *TINY), tmp_path), "DIV2K/DIV2K_train_HR", "DIV2K_valid_LR_bicubic/X2")


def test_corrupt_image(folder_cfg, tmp_path, folder):
    (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:60])
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}"), "1.png")


@pytest.mark.slow
def test_non_image_file_is_an_error_or_skipped_by_setting(folder_cfg, tmp_path, folder):
    (folder / "notes.txt").write_text("not an image")
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}"), "notes.txt")
    with pytest.warns(UserWarning, match="skipping non-image file .*notes.txt"):  # printed on stderr by the CLI
        status, err = train(folder_cfg, tmp_path, f"dataset.path={folder}", "on_bad_file=skip")
    assert status == 0, err[-2000:]


@pytest.mark.slow
def test_grey_rgba_palette_and_16bit_images_train_and_test(folder_cfg, tmp_path):
    d = tmp_path / "modes"
    d.mkdir()
    photo(d / "grey.png", mode="L"), photo(d / "rgba.png", mode="RGBA"), photo(d / "pal.png", mode="P")
    photo(d / "deep.png", bits16=True)
    status, err = train(folder_cfg, tmp_path, f"dataset.path={d}")
    assert status == 0, err[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["records"][0]["n_images"] == 4


def test_image_smaller_than_the_training_crop(folder_cfg, tmp_path, folder):
    photo(folder / "tiny.png", size=(20, 20))
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}", "train.inp_size=8", "scale.max=4"),
                  "tiny.png is 20x20", "32x32")


@pytest.mark.parametrize("args, fragment", [(["scale.min=0"], "impossible scale range"),
                                            (["scale.min=3", "scale.max=2"], "impossible scale range"),
                                            (["scales=[0]"], "positive integers")])
def test_impossible_scales(folder_cfg, tmp_path, folder, args, fragment):
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}", *args), fragment)


BIG = "1" + "0" * 400  # YAML reads it as an int no float can hold


@pytest.mark.parametrize("setting, fragment", [
    ("infer.max_memory=" + "9" * 400 + "GB", "a memory size must be at most 8 EB"),
    (f"infer.max_memory={BIG}", "a memory size must be at most 8 EB"),
    ("infer.max_memory=1e308", "a memory size must be at most 8 EB"),
    (f"test.cell_clip={BIG}", "test.cell_clip="), ("task.max_upload_mb=1e308", "task.max_upload_mb=1e+308 must be at most"),
    ("task.cache_mb=1e300", "task.cache_mb=1e+300 must be at most"), (f"seed={2 ** 31}", "seed=2147483648 must be at most"),
])
def test_a_huge_number_is_one_line_not_an_overflow(folder_cfg, tmp_path, folder, setting, fragment):
    """Each was an OverflowError traceback (in task=serve for the viewer's sizes); a seed above 2**31 - 1
    is more than Jittor's set_seed (a C int) takes, above 2**64 a ValueError from torch once the run had
    started. In process: the typed configs' checks, which a YAML file's values meet too."""
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}", setting), fragment)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("setting", [f"train.lr={BIG}", f"scale.max={BIG}", f"scales=[2,{BIG}]", f"infer.max_memory=-{BIG}"])
def test_a_number_too_large_for_a_float_is_refused_before_hydra(setting):
    """OmegaConf's float() of it raised an OverflowError traceback inside Hydra's composition
    (float settings), before any check of ours (liif.cli.argv.check_numbers)."""
    with pytest.raises(ArgvError, match=r"holds a number of 401 digits, more than any setting takes"):
        check_numbers(["task=test", setting])
    check_numbers(["train.lr=1e-4", "seed=12345678901234567890", "hydra.run.dir=/x/" + "9" * 400, f"name=a{BIG}"])


@pytest.mark.slow
def test_a_number_too_large_for_a_float_through_the_cli(tmp_path):
    r = run_cli("task=test", "checkpoint=x.pth", f"train.lr={BIG}", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: train.lr= holds a number of 401 digits"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_stray_world_size_does_not_make_a_plain_run_distributed(folder_cfg, tmp_path, folder, monkeypatch):
    """A shell inside a cluster job may hold some of torchrun's variables. WORLD_SIZE=1 (or none) is one
    process whatever the rest says; WORLD_SIZE=2 without the others was a ValueError traceback from
    torch's rendezvous: now one line naming them, before the run folder is made
    (liif.backends.common.torchrun_world has every case)."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    status, err = train(folder_cfg, tmp_path, f"dataset.path={folder}")
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "ok"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK")
    fails_cleanly(train(folder_cfg, tmp_path / "again", f"dataset.path={folder}"),
                  "WORLD_SIZE=2 is set but RANK, MASTER_ADDR, MASTER_PORT are not")
    assert not (tmp_path / "again" / "run").exists()


@pytest.mark.parametrize("dataset, words", [
    ("sample", "cannot make the sample set in {data}/sample: {data} is a file, not a folder"),
    ("div2k", "dataset folder not found: {data}/DIV2K/DIV2K_train_HR ({data} is a file, not a folder"),
    ("celebahq_32_256", "dataset folder not found: {data}/CelebAHQ/32 ({data} is a file, not a folder"),
])
def test_liif_data_pointing_at_a_file_is_one_line_naming_it(tmp_path, monkeypatch, dataset, words):
    """LIIF_DATA (paths.data_dir) set to a file: the sample set was a FileExistsError traceback, the
    datasets under it 'not found' with no word of why."""
    data = tmp_path / "notes.txt"
    data.write_text("not a folder")
    monkeypatch.setenv("LIIF_DATA", str(data))
    fails_cleanly(run_task_with_overrides(compose(f"dataset={dataset}", *TINY), f"output_dir={tmp_path / 'run'}"),
                  words.format(data=data), "LIIF_DATA")
    assert data.read_text() == "not a folder" and not list(tmp_path.glob(".notes.txt*"))  # nothing built beside it


def test_a_dataset_folder_that_is_a_file_says_so(folder_cfg, tmp_path):
    (tmp_path / "imgs").write_text("")
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={tmp_path / 'imgs'}"),
                  f"dataset folder {tmp_path / 'imgs'} is a file, not a folder")


def test_hr_lr_count_and_size_mismatch(tmp_path, fixtures_dir):
    bench = tmp_path / "data" / "benchmark" / "Mine"
    (bench / "HR").mkdir(parents=True)
    (bench / "LR_bicubic" / "X2").mkdir(parents=True)
    for i in range(2):
        photo(bench / "HR" / f"{i}.png", size=(40, 40))
    photo(bench / "LR_bicubic" / "X2" / "0x2.png", size=(20, 20))
    cfg = compose("task=test", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", "dataset=benchmark",
                  "dataset.name=Mine", f"paths.data_dir={tmp_path / 'data'}", "scales=[2]", "device=cpu")
    fails_cleanly(run_task_with_overrides(cfg, f"output_dir={tmp_path / 'r1'}"), "1", "2")  # counts: 1 vs 2
    photo(bench / "LR_bicubic" / "X2" / "1x2.png", size=(13, 20))
    fails_cleanly(run_task_with_overrides(cfg, f"output_dir={tmp_path / 'r2'}"), "not a x2 pair")


def test_a_file_that_is_not_a_checkpoint(tmp_path, folder):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 100)
    cfg = compose("task=test", f"checkpoint={bad}", "dataset=folder", f"dataset.path={folder}", "device=cpu")
    fails_cleanly(run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run'}"), "not a readable checkpoint")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_checkpoint_that_is_a_fifo_or_a_device_is_not_reported_missing(tmp_path, folder, kind):
    path = {"fifo": tmp_path / "ckpt.pth", "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it would wait for a writer: the test would hang
    cfg = compose("task=test", f"checkpoint={path}", "dataset=folder", f"dataset.path={folder}", "device=cpu")
    fails_cleanly(run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run'}"), f"checkpoint={path} is not a regular file")


@pytest.mark.slow
def test_a_checkpoint_of_another_model(folder_cfg, tmp_path, folder, fixtures_dir):
    metasr = fixtures_dir / "ckpt_edsr-baseline-metasr.pth"
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}", f"checkpoint={metasr}"),  # the default model
                  "holds another model than the config's model", "name is 'metasr' in the checkpoint, 'liif' asked for")


@pytest.mark.slow
def test_unknown_framework_is_hydras_clear_error(tmp_path):
    r = run_cli("framework=tensorflow", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "framework/tensorflow" in r.stderr and "torch" in r.stderr  # lists the options


@pytest.mark.parametrize("device, fragment", [("cuda", "no CUDA GPU"), ("tpu", "unknown device")])
def test_unavailable_or_unknown_device(tmp_path, fixtures_dir, device, fragment):
    if device == "cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    src = photo(tmp_path / "in.png")
    cfg = compose("task=demo", f"checkpoint={fixtures_dir / 'ckpt_edsr-baseline-liif.pth'}", f"input={src}",
                  "size=[8,8]", f"output={tmp_path / 'o.png'}", f"device={device}")
    fails_cleanly(run_task_with_overrides(cfg, f"output_dir={tmp_path / 'run'}"), fragment)


def test_a_finished_run_directory_is_not_reused(folder_cfg, tmp_path, folder):
    assert train(folder_cfg, tmp_path, f"dataset.path={folder}")[0] == 0
    fails_cleanly(train(folder_cfg, tmp_path, f"dataset.path={folder}"), "already holds a run", "resume=true")


def test_a_jittor_internal_failure_says_what_to_do(monkeypatch):
    """The CLI asks the run's backend whether an error is the framework's internal failure
    (liif.backends.is_internal_failure); only Jittor's backend says yes, and only once loaded."""
    import sys
    import types

    from liif import backends
    from liif.backends import jittor_setup
    from liif.cli.main import one_line
    internal = RuntimeError("[f op_compiler.cc:832] Check failed: member.size() <= var_num  Something wrong... "
                            "Could you please report this issue?")
    monkeypatch.delitem(sys.modules, "liif.backends.jittor", raising=False)
    assert not backends.is_internal_failure("jittor", internal)  # a framework never loaded has not failed
    # the loaded Jittor backend, without importing jittor here (its check is jittor_setup's)
    monkeypatch.setitem(sys.modules, "liif.backends.jittor",
                        types.SimpleNamespace(is_internal_failure=jittor_setup.is_internal_failure))
    assert "an internal failure of jittor" in one_line(internal, "jittor")
    assert "run the same command again, with resume=true" in one_line(internal, "jittor")
    assert one_line(internal, "torch") == str(internal)  # torch's backend: never an internal failure
    assert one_line(RuntimeError("no such folder: x"), "jittor") == "no such folder: x"
    assert one_line(KeyError("missing key 'a'")) == "missing key 'a'"  # not KeyError's quoted repr


def test_the_suites_rerun_is_for_jittor_internal_failures_only():
    """conftest runs a CLI command a second time only after a Jittor internal failure, and only once."""
    from conftest import once_more_on_jittor_internal_error
    calls = []

    def fake(stderr):
        @once_more_on_jittor_internal_error
        def run(*args):
            calls.append(args)
            return subprocess.CompletedProcess(args, 2, "", stderr)
        return run

    with pytest.warns(UserWarning, match="Jittor failed internally"):
        assert fake("error: ... Could you please report this issue?")("a").returncode == 2
    assert len(calls) == 2
    calls.clear()
    assert fake("error: no such folder")("a").returncode == 2
    assert len(calls) == 1
