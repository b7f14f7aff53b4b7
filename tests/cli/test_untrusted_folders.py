"""A run folder from someone else (issue 21), resumed (`python run.py resume=<dir>`), served (the viewer's
`dir=`) and at the tail of a sweep. Each crafted folder is an attack: callbacks and `_target_` that would
run code (a marker file stays absent), another task, output folders elsewhere, a YAML alias bomb, links
out of the folder. A refusal is one `error:` line (exit 2) before Hydra starts: nothing of the folder
runs and nothing is written anywhere (the whole tree is compared), in bounded time. Then seeded fuzzers
over a real run folder's files feed `resume=` and `dir=`: every outcome is a resumed (served) run or one
project error line; never a traceback, a hang, or a write outside the given folders.

In process: `run_cli_inprocess` is run.py's path (its argv rewriting included) without an interpreter start."""
import json
import logging
import os
import random
import shutil
import time

import pytest
import yaml

from conftest import photo, run_cli_inprocess, tree_state
from hostile_files import billion_laughs, change_bytes
from liif.errors import LiifError

# a run small enough to train in a second: a non-default model, so its overrides must come back
# (the recipe first, the data path last: a truncated overrides.yaml is a short run or a refusal, never
# the default recipe's twelve epochs)
TINY = ["train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=2", "train.inp_size=8", "train.sample_q=16",
        "train.milestones=[2]", "device=cpu", "framework.threads=1", "scales=[2]", "dataset=folder", "dataset.val=null",
        "dataset.train.repeat=2", "model=edsr_baseline_liif_c", "model.args.encoder_spec.args.n_resblocks=1",
        "model.args.encoder_spec.args.n_feats=8", "model.args.imnet_spec.args.hidden_list=[16]"]


def images_in(folder):
    folder.mkdir()
    for i in range(2):
        photo(folder / f"{i}.png")
    return folder


def fake_run(folder, images):
    """A run folder as a training leaves it, as far as resume= reads it before Hydra starts (the
    checkpoint is read by the trainer, after: here it is bytes)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch-last.pth").write_bytes(b"not read before the checks")
    for name in ("config.yaml", ".hydra/config.yaml", ".hydra/hydra.yaml", "run.log", "history.csv", "metrics.json"):
        (folder / name).write_text("")
    write_overrides(folder, [*TINY, f"dataset.path={images}"])
    return folder


def write_overrides(folder, overrides):
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def add_overrides(folder, *more):
    saved = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    write_overrides(folder, saved + list(more))


def resumed(folder, *extra):
    """`python run.py resume=<folder> EXTRA`, in process: (exit status, stderr, seconds)."""
    start = time.monotonic()
    status, _, err = run_cli_inprocess(f"resume={folder}", *extra)
    return status, err, time.monotonic() - start


def assert_one_line(status, err, words=""):
    assert status == 2, err[-3000:]
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err[-3000:]
    assert words in err, err


# ---- attacks on resume=<run dir> ------------------------------------------------------------------------------------
def overrides_attack(*lines):
    return lambda run, out: add_overrides(run, *(line.format(out=out) for line in lines))


def link(name, target):
    def craft(run, out):
        path = run / name
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target.format(out=out))
    return craft


def replaced(name, make):
    def craft(run, out):
        path = run / name
        path.unlink()
        make(path, out)
    return craft


def group_path_attack(run, out):
    """A config group's option named by a path: Hydra would load any YAML file, here one the folder
    ships (`# @package _global_` with a callback)."""
    (run / "evil.yaml").write_text(f"# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: builtins.open\n"
                                   f"      file: {out}/MARKER\n      mode: w\n")
    add_overrides(run, "experiment=" + "../" * 30 + str(run / "evil")[1:])


ATTACKS = {  # name: (craft(run folder, a folder outside it), words of the refusal)
    "a callback that runs code": (overrides_attack("+hydra.callbacks.evil._target_=builtins.open",
                                                   "+hydra.callbacks.evil.file={out}/MARKER",
                                                   "+hydra.callbacks.evil.mode=w"), "_target_"),
    "a callback's arguments alone": (overrides_attack("+hydra.callbacks.report.per_job=false"), "hydra.*"),
    "the log file elsewhere": (overrides_attack("hydra.job_logging.handlers.file.filename={out}/MARKER"), "hydra.*"),
    "the launcher": (overrides_attack("hydra/launcher=parallel"), "hydra.*"),
    "a multirun": (overrides_attack("hydra.mode=MULTIRUN"), "hydra.*"),
    "hydra.run.dir elsewhere": (overrides_attack("hydra.run.dir={out}"), "hydra.*"),
    "hydra.output_subdir": (overrides_attack("hydra.output_subdir=../../x"), "hydra.*"),
    "_target_ in a model argument": (overrides_attack("+model.args.evil={{_target_: builtins.open, file: "
                                                      "'{out}/MARKER', mode: w}}"), "_target_"),
    "_target_ as a key": (overrides_attack("+model.args._target_=builtins.print"), "_target_"),
    "_partial_ deep in a list": (overrides_attack("+model.args.evil=[1,[{{_partial_: true}}]]"), "_target_"),
    "task=demo": (overrides_attack("task=demo"), "holds a task=demo run"),
    "task=serve": (overrides_attack("task=serve"), "holds a task=serve run"),
    "task.name": (overrides_attack("task.name=report"), "another task"),
    "a viewer setting": (overrides_attack("task.port=80"), "another task"),
    "output_dir elsewhere": (overrides_attack("output_dir={out}"), "where the run's files are written"),
    "run_name up two folders": (overrides_attack("run_name=../../x"), "where the run's files are written"),
    "a demo output": (overrides_attack("output={out}/x.png"), "another task"),
    "a report folder": (overrides_attack("dir={out}"), "another task"),
    "this machine's own config": (overrides_attack("local=default"), "conf/local/"),
    "a config group's option as a path": (group_path_attack, "takes the name of a file of conf/experiment/"),
    "an environment variable copied into config.yaml": (overrides_attack("dataset.name=${{oc.env:HOME}}"),
                                                        "interpolation"),
    "an interpolation in a list": (overrides_attack("scales=[2,'${{oc.env:HOME}}']"), "interpolation"),
    "a sweep": (overrides_attack("seed=0,1"), "a sweep"),
    "a glob sweep": (overrides_attack("experiment=glob(*)"), "a sweep"),
    "a package": (overrides_attack("model@_global_=rdn_liif"), "a package"),
    "not an override": (overrides_attack("=="), "Hydra can parse"),
    "30000 nested brackets": (overrides_attack("scales=" + "[" * 30_000 + "]" * 30_000), "brackets deep"),
    "an override of 60 KB": (overrides_attack("dataset.name=" + "x" * 60_000), "over 4096 characters"),
    "a typed value of the wrong type": (overrides_attack("train.epochs=abc"), "do not make a valid run"),
    "a key the config does not have": (overrides_attack("+train.evil=1"), "do not make a valid run"),
    "a value out of range": (overrides_attack("train.epochs=-1"), "do not make a valid run"),
    "an unknown model": (overrides_attack("model=nope"), "do not make a valid run"),
    "an alias bomb": (replaced(".hydra/overrides.yaml", lambda p, out: p.write_text(billion_laughs())), "aliases"),
    "an alias of a string": (replaced(".hydra/overrides.yaml", lambda p, out: p.write_text("- &x seed=1\n- *x\n")),
                             "aliases"),
    "50000 nested lists": (replaced(".hydra/overrides.yaml", lambda p, out: p.write_text("[" * 30_000 + "]" * 30_000)),
                           "nested list"),
    "overrides of 10 MB": (replaced(".hydra/overrides.yaml", lambda p, out: p.write_text("- seed=1\n" * (1 << 20))),
                           "over 64.0 KB"),
    "overrides that are a mapping": (replaced(".hydra/overrides.yaml",
                                              lambda p, out: p.write_text("hydra: {callbacks: {}}\n")), "mapping"),
    "overrides as a fifo": (replaced(".hydra/overrides.yaml", lambda p, out: os.mkfifo(p)), "a fifo"),
    "overrides linked to /dev/zero": (link(".hydra/overrides.yaml", "/dev/zero"), "outside"),
    "no overrides": (replaced(".hydra/overrides.yaml", lambda p, out: None), "holds no overrides.yaml"),
    "the checkpoint linked out": (link("checkpoints/epoch-last.pth", "{out}/someone_elses.pth"), "outside"),
    "checkpoints/ linked out": (link("checkpoints", "{out}"), "outside"),
    "tb/ linked out": (link("tb", "{out}"), "outside"),
    "samples/ linked out": (link("samples", "{out}"), "outside"),
    ".hydra/ linked out": (link(".hydra", "{out}"), "outside"),
    "Hydra's config linked out": (link(".hydra/config.yaml", "{out}/yours.txt"), "outside"),
    "the log linked out": (link("run.log", "{out}/yours.txt"), "outside"),
    "the log as a fifo": (replaced("run.log", lambda p, out: os.mkfifo(p)), "a fifo"),
    "Hydra's file a hard link to yours": (replaced(".hydra/hydra.yaml", lambda p, out: os.link(f"{out}/yours.txt", p)),
                                          "2 names"),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_crafted_run_folder_is_refused_in_one_line_before_anything_runs(tmp_path, attack):
    craft, words = ATTACKS[attack]
    out = tmp_path / "elsewhere"  # what the user has outside the folder
    out.mkdir()
    (out / "yours.txt").write_text("keep me")
    (out / "someone_elses.pth").write_bytes(b"\x00" * 64)
    run = fake_run(tmp_path / "run", images_in(tmp_path / "imgs"))
    if attack == ".hydra/ linked out":
        shutil.copytree(run / ".hydra", out, dirs_exist_ok=True)
    craft(run, out)
    before = tree_state(tmp_path)
    status, err, seconds = resumed(run)
    assert_one_line(status, err, words)
    assert seconds < 60  # expanded, the bomb never ends; a fifo blocks forever
    assert not (out / "MARKER").exists()
    assert tree_state(tmp_path) == before  # nothing written, the folder included


def test_a_sweeps_table_is_dropped_and_everything_else_a_run_was_started_with_is_kept(tmp_path):
    """`table=` chose the sweep a job belonged to (its file sets only Hydra's mode and sweep): restored,
    a resume would run the whole table again. Everything a training may be started with comes back."""
    from liif.cli.argv import resume_in_place
    run = fake_run(tmp_path / "run", images_in(tmp_path / "imgs"))
    legit = ["table=table3", "+model.args.extra=1", "seed=3", "profile=smoke", "paths.data_dir=/d",
             "checkpoint=/somewhere/start.pth", "infer.max_memory=1GB", "test.cell_clip=4", "eval_bsize=100",
             "debug=true", "on_bad_file=skip", "framework=torch", "framework.threads=2", "device=cpu",
             "train.epochs=2", "resume=true", "task=train"]
    add_overrides(run, *legit)
    argv = resume_in_place([f"resume={run}"])
    assert "table=table3" not in argv and "resume=true" == argv[-1] and argv.count("resume=true") == 1
    assert all(o in argv for o in legit if not o.startswith(("table=", "resume=")))


# ---- a real run folder ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny training (in process), its folder and the images it trained on."""
    root = tmp_path_factory.mktemp("finished")
    images = images_in(root / "imgs")
    status, _, err = run_cli_inprocess(*TINY, f"dataset.path={images}", f"hydra.run.dir={root / 'run'}")
    assert status == 0, err[-3000:]
    return root / "run"


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_a_real_run_folder_resumes_and_the_same_folder_with_a_callback_is_refused(finished_run, tmp_path):
    """The control: the folder as the run left it resumes in place (the final test again, the same
    numbers) and writes nothing outside it; with a callback added to its overrides, nothing runs."""
    run = shutil.copytree(finished_run, tmp_path / "run", symlinks=True)
    outside = tree_state(finished_run.parent)
    status, err, _ = resumed(run)
    assert status == 0, err[-3000:]
    assert metrics(run)["status"] == "ok"
    assert [r["psnr"] for r in metrics(run)["records"]] == [r["psnr"] for r in metrics(finished_run)["records"]]
    assert set(os.listdir(tmp_path)) == {"run"} and tree_state(finished_run.parent) == outside

    add_overrides(run, "+hydra.callbacks.evil._target_=builtins.open", f"+hydra.callbacks.evil.file={tmp_path}/MARKER",
                  "+hydra.callbacks.evil.mode=w")
    before = tree_state(tmp_path)
    assert_one_line(*resumed(run)[:2], "_target_")
    assert not (tmp_path / "MARKER").exists() and tree_state(tmp_path) == before


@pytest.mark.slow
def test_a_checkpoint_whose_training_state_no_training_writes_is_one_line(finished_run, tmp_path):
    """The resume's path to liif.training.trainer.training_state (each field: tests/unit/training/test_trainer.py)."""
    from liif.models import checkpoint
    run = shutil.copytree(finished_run, tmp_path / "run", symlinks=True)
    path = run / "checkpoints" / "epoch-last.pth"
    ckpt = checkpoint.read(str(path))
    ckpt["liif"]["next_epoch"] = "2"  # was a TypeError in the loop
    checkpoint.write(ckpt, str(path))
    status, err, _ = resumed(run)
    assert_one_line(status, err, "its training state is not one a training writes (next_epoch='2')")


# ---- the viewer's dir= ---------------------------------------------------------------------------------------------
def served(sweep):
    """What task=serve reads of `dir=`, up to the server's start: the checkpoints, loaded, and their labels."""
    from liif.serve.sources import load_checkpoints
    from liif.serve.task import checkpoint_paths
    return load_checkpoints(checkpoint_paths(None, str(sweep)), "torch", "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["the checkpoint", "checkpoints/", "the run"])
def test_the_viewer_refuses_a_sweep_whose_checkpoint_a_link_takes_out_of_it(finished_run, tmp_path, where):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copytree(finished_run, sweep / "0_run", symlinks=True)
    assert [c.label["run"] for c in served(sweep)] == ["0_run"]
    elsewhere = shutil.copytree(finished_run, tmp_path / "elsewhere", symlinks=True)
    if where == "the run":
        (sweep / "1_run").symlink_to(elsewhere)
    else:
        shutil.copytree(finished_run, sweep / "1_run", symlinks=True)
        name = "checkpoints" if where == "checkpoints/" else "checkpoints/epoch-last.pth"
        target = sweep / "1_run" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(elsewhere / name)
    with pytest.raises(LiifError, match="leads out of") as e:
        served(sweep)
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("liif, epoch", [("x", 3), ({"framework": ["x"]}, "3"), ([1], None)])
def test_a_checkpoints_own_fields_of_another_type_leave_its_label_plain(finished_run, tmp_path, liif, epoch):
    from liif.models import checkpoint
    sweep = tmp_path / "sweep"
    run = shutil.copytree(finished_run, sweep / "0_run", symlinks=True)
    path = run / "checkpoints" / "epoch-last.pth"
    ckpt = checkpoint.read(str(path))
    ckpt["liif"], ckpt["epoch"] = liif, epoch
    checkpoint.write(ckpt, str(path))
    label = served(sweep)[0].label
    assert label["framework"] == "original code" and label["epoch"] == (epoch if isinstance(epoch, int) else None)


# ---- the tail of a sweep -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_tail_of_a_sweep_prints_its_jobs_errors_without_terminal_codes(tmp_path, capsys):
    """A sweep's end prints the details its failed jobs share: from their metrics.json, which a sweep folder
    given by anyone holds. Escape sequences (retitle the window, set the clipboard: OSC 52) are printed
    as escapes; a detail of a million lines is cut; an alias bomb in a job's overrides is not expanded."""
    from omegaconf import OmegaConf
    from liif.cli.hydra_callbacks import MAX_DETAIL_LINES, ReportCallback
    evil = "RuntimeError: x\n\x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J" + "\nline" * 1_000_000
    for name, error in (("0_a", evil), ("1_b", "DataLayoutError: no data\nexpected layout: /d")):
        job = tmp_path / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(billion_laughs())
        (job / "metrics.json").write_text(json.dumps({"status": "failed", "error": error}))
    start = time.monotonic()
    with pytest.raises(SystemExit) as e:
        ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert e.value.code == 2 and time.monotonic() - start < 60
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b]52;c;ZXZpbA==\\x07" in err
    assert err.count("\nline") == MAX_DETAIL_LINES - 1 and "more lines)" in err and "expected layout: /d" in err


# ---- the fuzzers ---------------------------------------------------------------------------------------------------
# the files of a run folder, and what resume= and the viewer read of them (overrides.yaml most often)
FILES = [".hydra/overrides.yaml"] * 6 + ["config.yaml", ".hydra/config.yaml", ".hydra/hydra.yaml", "metrics.json",
                                         "history.csv", "run.log", "checkpoints/epoch-last.pth"]
HOSTILE_OVERRIDES = ["+hydra.callbacks.x._target_=builtins.open", "hydra.run.dir=/", "task=serve", "task=demo",
                     "output_dir=/", "experiment=../../x", "dataset.name=${oc.env:HOME}", "+model.args._target_=x",
                     "seed=0,1", "model@_global_=x", "~model", "local=x", "train.epochs=abc", "train.epochs=3",
                     "train.epochs=-1", "scales=[2,3]", "model=rdn_liif", "table=table1", "resume=/", "=", "",
                     "x" * 5000, "device=cuda:7", "+train.x=1", "dataset.path=/nonexistent", "\x1b]0;x\x07=1",
                     "scales=" + "[" * 20_000, "dataset.train.split_file=/dev/zero"]
REPLACEMENTS = [b"", b"null", b"[]", b"{}", billion_laughs().encode(), b"- x\n" * 20_000, os.urandom(64)]  # whole files
HOSTILE_BYTES = [b"&a [*a, *a]", b"*a", b"&a", b"[" * 5000, b"{", b"}", b":", b"- ", b"\n- ", b"\xff\xfe", b"\x00",
                 b"!!python/object:os.system", b"'", b'"', b"\t", b"---\n", b"%YAML 1.1\n"]


def mutate(path, rnd):
    """One change to the file at `path`, chosen by the seeded `rnd`."""
    if path.is_symlink() or not path.is_file():  # made a link, a folder or a fifo by an earlier change, or removed
        return
    op = rnd.choice(["flip"] * 2 + ["truncate"] + ["splice"] * 3 + ["override"] * 4 + [
        "replace", "remove", "folder", "fifo", "link out", "link to /dev/zero"])
    if op == "override":  # a hostile override among the saved ones (in any YAML-valid spelling)
        lines = path.read_text(errors="replace").splitlines()
        lines.insert(rnd.randint(0, len(lines)), "- " + json.dumps(rnd.choice(HOSTILE_OVERRIDES)))
        path.write_text("\n".join(lines) + "\n")
    else:
        change_bytes(path, op, rnd, HOSTILE_BYTES, REPLACEMENTS, max_flips=4)


def fuzz_cases(n, folders, files=FILES):
    """`n` seeded cases: (case, its random source, [(folder, file), ...]): 1 to 3 changes each."""
    for case in range(n):
        rnd = random.Random(case)
        yield case, rnd, [(rnd.choice(folders), rnd.choice(files)) for _ in range(rnd.randint(1, 3))]


def check_outcome(status, err, before, after, run):
    """A resumed run (exit 0, metrics.json ok, only the folder changed) or one error line, nothing changed."""
    if status == 0:
        assert metrics(run)["status"] == "ok"
        assert {k: v for k, v in after.items() if not k.startswith("run/") and k != "run"} == \
            {k: v for k, v in before.items() if not k.startswith("run/") and k != "run"}
    else:
        assert_one_line(status, err)
        # a refusal before Hydra changes nothing; a failure inside the run writes only its own folder
        assert {k: v for k, v in after.items() if not k.startswith("run/")} == \
            {k: v for k, v in before.items() if not k.startswith("run/")}


RESUME_FUZZ_CASES = 60  # about 15 s


@pytest.mark.slow
def test_fuzzed_run_folders_resume_or_give_one_error_line(finished_run, tmp_path, monkeypatch):
    """Seeded, so every run tries the same cases: 1 to 3 changes to a real run folder's overrides.yaml,
    config.yaml, Hydra's files, metrics.json, history.csv, log or checkpoint (bit flips, truncation,
    hostile bytes and overrides spliced in, bombs, a folder, a fifo or a link in its place), then
    `resume=<folder>`. Each case: the run resumes and writes only its folder, or one error line; never
    a traceback, a hang or a write elsewhere (the working folder included: it holds the sample set,
    which a run whose overrides lost `dataset=folder` uses). All failing cases are listed."""
    from liif.data import ensure_sample_set
    work = tmp_path / "work"
    ensure_sample_set(str(work / "data" / "sample"))
    monkeypatch.chdir(work)
    working = tree_state(work)
    log_handlers = logging.getLogger().handlers[:]
    failures = []
    for case, rnd, changes in fuzz_cases(RESUME_FUZZ_CASES, ["run"]):
        root = tmp_path / str(case)
        root.mkdir()
        run = shutil.copytree(finished_run, root / "run", symlinks=True)
        for _, name in changes:
            mutate(run / name, random.Random(rnd.random()))
        before = tree_state(root)
        outside = tree_state(finished_run.parent)
        try:
            status, err, seconds = resumed(run)
            assert seconds < 120
            check_outcome(status, err, before, tree_state(root), run)
            assert tree_state(finished_run.parent) == outside and tree_state(work) == working
        except Exception as e:  # every case runs; the failures are listed together
            failures.append(f"case {case} {changes}: {type(e).__name__}: {str(e)[:500]}")
        shutil.rmtree(root, ignore_errors=True)
    assert not failures, "\n".join(failures)
    # no run's log handler is left behind on a folder now removed: the next test that logs would fail
    assert logging.getLogger().handlers == log_handlers


VIEWER_FUZZ_CASES = 60


@pytest.mark.slow
def test_fuzzed_sweep_folders_are_served_or_give_one_error_line(finished_run, tmp_path):
    """The viewer's dir= over a sweep of two copies of a real run, each case 1 to 3 changes (as above,
    checkpoints included): the checkpoints are loaded, or one project error line; nothing is written."""
    failures = []
    for case, rnd, changes in fuzz_cases(VIEWER_FUZZ_CASES, ["0_a", "1_b"], ["checkpoints/epoch-last.pth"] * 4 + FILES):
        sweep = tmp_path / str(case)
        for job in ("0_a", "1_b"):
            shutil.copytree(finished_run, sweep / job, symlinks=True)
        for job, name in changes:
            mutate(sweep / job / name, random.Random(rnd.random()))
        before = tree_state(tmp_path)
        try:
            try:
                loaded = served(sweep)
                assert 1 <= len(loaded) <= 2
            except LiifError as e:
                assert str(e) and "\n" not in str(e), str(e)
            assert tree_state(tmp_path) == before
        except Exception as e:  # noqa: BLE001 - every case runs; the failures are listed together
            failures.append(f"case {case} {changes}: {type(e).__name__}: {str(e)[:500]}")
        shutil.rmtree(sweep, ignore_errors=True)
    assert not failures, "\n".join(failures)
