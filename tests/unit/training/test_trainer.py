"""Training end to end on the sample set with a tiny model: it learns, it resumes exactly,
it stops cleanly on a signal and on a NaN loss."""
import json
import os
import signal
import time

import numpy as np
import pytest

import liif.training.trainer
from conftest import slow_case, typed
from liif.training.trainer import Trainer

TINY = ["model.args.encoder_spec.args.n_resblocks=2", "model.args.encoder_spec.args.n_feats=16",
        "model.args.imnet_spec.args.hidden_list=[32,32]", "train.batch_size=2", "train.inp_size=16",
        "train.sample_q=128", "train.max_steps_per_epoch=4", "train.epochs=3", "train.milestones=[2]",
        "train.epoch_val=1", "train.lr=4e-4", "dataset.val.repeat=1", "framework.threads=1"]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data") / "sample")


def tiny_cfg(sample_dir, out_dir, *extra):
    return typed(f"paths.sample_dir={sample_dir}", *TINY, f"output_dir={out_dir}", *extra)


@pytest.mark.parametrize("options", [(), slow_case(("framework.channels_last=true",))], ids=["default", "channels_last"])
def test_resume_after_interruption_gives_the_same_losses(sample_dir, tmp_path, options, monkeypatch):
    full = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "full", *options), str(tmp_path / "full"))
    assert full.fit() is None
    assert len(full.step_losses) == 12

    first = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "cut", *options), str(tmp_path / "cut"))
    original_step = liif.training.trainer.train_step

    def step_then_interrupt(*args):  # SIGTERM arrives during step 6 (mid-epoch 2)
        loss = original_step(*args)
        if len(first.step_losses) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    with monkeypatch.context() as patch:
        patch.setattr(liif.training.trainer, "train_step", step_then_interrupt)
        assert first.fit() == signal.SIGTERM
    assert len(first.step_losses) == 6

    resumed = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "cut", *options, "resume=true"), str(tmp_path / "cut"))
    assert (resumed.epoch, resumed.step_in_epoch) == (2, 2)
    assert resumed.fit() is None
    assert first.step_losses + resumed.step_losses == full.step_losses  # bit for bit
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert [r["lr"] for r in resumed.history] == [4e-4, 4e-4, 2e-4]  # decayed once, not twice


@pytest.mark.slow
def test_a_mid_epoch_resume_makes_only_the_batches_it_trains_on(sample_dir, tmp_path, monkeypatch):
    """The batches are those of an uninterrupted run, and the steps already done cost no item."""
    cfg = lambda out, *extra: tiny_cfg(sample_dir, out, "train.epochs=1", *extra)  # noqa: E731
    seen = []

    def record_batch(B, net, opt, batch, *args):  # the data is under test here, not the step
        seen.append({k: B.to_numpy(v) for k, v in batch.items()})
        return 0.0

    monkeypatch.setattr(liif.training.trainer, "train_step", record_batch)
    assert Trainer.from_config(cfg(tmp_path / "full"), str(tmp_path / "full")).fit() is None
    full, seen[:] = list(seen), []

    first = Trainer.from_config(cfg(tmp_path / "cut"), str(tmp_path / "cut"))

    def record_then_interrupt(*args):  # SIGTERM during step 2 of 4
        record_batch(*args)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return 0.0

    with monkeypatch.context() as patch:
        patch.setattr(liif.training.trainer, "train_step", record_then_interrupt)
        assert first.fit() == signal.SIGTERM
    resumed = Trainer.from_config(cfg(tmp_path / "cut", "resume=true"), str(tmp_path / "cut"))
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 2)
    made, wrapper_class = [], type(resumed.train_set)
    make_item = wrapper_class.__getitem__

    def counting_item(wrapper, i):
        if wrapper is resumed.train_set:
            made.append(i)
        return make_item(wrapper, i)

    monkeypatch.setattr(wrapper_class, "__getitem__", counting_item)
    assert resumed.fit() is None
    assert len(made) == 2 * 2  # steps 3 and 4 of 4, batches of 2: not the steps done before the cut, not step 5
    assert len(seen) == len(full) == 4
    for got, expected in zip(seen, full):
        assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(sample_dir, tmp_path):
    runs = [Trainer.from_config(tiny_cfg(sample_dir, tmp_path / str(i), f"seed={seed}", "train.epochs=1"), str(tmp_path / str(i)))
            for i, seed in enumerate([3, 3, 4])]
    for run in runs:
        run.fit()
    assert runs[0].step_losses == runs[1].step_losses
    assert runs[0].step_losses != runs[2].step_losses


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(sample_dir, tmp_path, monkeypatch):
    from liif.models import checkpoint
    from liif.errors import LiifError
    trainer = Trainer.from_config(tiny_cfg(sample_dir, tmp_path), str(tmp_path))
    real = liif.training.trainer.train_step

    def nan_in_epoch_2(*args):
        loss = real(*args)
        return float("nan") if len(trainer.step_losses) == 5 else loss

    monkeypatch.setattr(liif.training.trainer, "train_step", nan_in_epoch_2)
    with pytest.raises(LiifError, match="the loss became nan at epoch 2, step 2"):
        trainer.fit()
    kept = checkpoint.read(str(tmp_path / "checkpoints" / "epoch-last.pth"))
    assert kept["epoch"] == 1 and kept["liif"]["step_in_epoch"] == 0  # the end of epoch 1, not the NaN state
    assert all(np.isfinite(v).all() for v in kept["model"]["sd"].values())


@pytest.mark.slow
def test_a_tiny_model_learns_to_beat_bicubic_at_x2(sample_dir, tmp_path):
    """A real learning check: overfit one training photo at x2 and beat bicubic on it."""
    from liif.data.layouts import test_set
    from liif.evaluation.evaluate import evaluate_set
    cfg = typed(f"paths.sample_dir={sample_dir}", f"output_dir={tmp_path}", "scale=x2_only",
                  "dataset.train.first_k=1", "dataset.train.repeat=400", "dataset.val=null",
                  "model.args.encoder_spec.args.n_resblocks=2", "model.args.encoder_spec.args.n_feats=32",
                  "model.args.imnet_spec.args.hidden_list=[64,64]", "train.batch_size=4", "train.inp_size=24",
                  "train.sample_q=576", "train.max_steps_per_epoch=null", "train.epochs=4", "train.lr=2e-3",
                  "train.milestones=[2,3]")
    trainer = Trainer.from_config(cfg, str(tmp_path))
    trainer.fit()
    losses = trainer.step_losses
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    image = sorted(os.listdir(cfg.dataset.train.root))[0]
    os.makedirs(tmp_path / "one")
    os.link(os.path.join(cfg.dataset.train.root, image), tmp_path / "one" / image)
    record = evaluate_set(trainer.as_model(), test_set(str(tmp_path / "one"), None, 2), "div2k-2")
    assert record["psnr"] > record["psnr_bicubic"], record


@pytest.mark.slow
def test_the_seed_fixes_the_same_initial_weights_on_every_framework(sample_dir, tmp_path):
    import importlib.util
    if importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")
    states = [Trainer.from_config(tiny_cfg(sample_dir, tmp_path / fw, f"framework={fw}", "seed=7"), str(tmp_path / fw))
              for fw in ("torch", "jittor")]
    a, b = (t.backend.state_dict_numpy(t.net) for t in states)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "o", "seed=8"), str(tmp_path / "o"))
    assert not np.array_equal(other.backend.state_dict_numpy(other.net)["imnet.layers.0.weight"], a["imnet.layers.0.weight"])


@pytest.mark.slow
def test_float64_training_matches_float32_at_first_and_resumes_in_float64(sample_dir, tmp_path):
    f32 = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "f32", "train.epochs=1"), str(tmp_path / "f32"))
    f32.fit()
    f64 = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "f64", "train.epochs=1", "framework.dtype=float64"), str(tmp_path / "f64"))
    f64.fit()
    # the same model and batches: float32 rounding is all that separates the first losses
    np.testing.assert_allclose(f64.step_losses[:2], f32.step_losses[:2], rtol=1e-5)
    assert f64.step_losses != f32.step_losses
    resumed = Trainer.from_config(tiny_cfg(sample_dir, tmp_path / "f64", "train.epochs=2", "framework.dtype=float64", "resume=true"),
                      str(tmp_path / "f64"))
    assert {v.dtype for v in resumed.backend.state_dict_numpy(resumed.net).values()} == {np.dtype("float64")}
    assert resumed.fit() is None and len(resumed.history) == 2
    assert np.isfinite(resumed.history[-1]["val_psnr"])


@pytest.mark.slow
def test_sigterm_during_the_final_test_is_recorded_and_resume_finishes_it(sample_dir, tmp_path, monkeypatch):
    import liif.evaluation.evaluate
    from liif.training.trainer import main
    real_evaluate = liif.evaluation.evaluate.evaluate

    def sigterm_then_evaluate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2)  # the handler runs here
        return real_evaluate(*args, **kwargs)

    def unhandled(signum, frame):  # if main() let SIGTERM through, fail the test instead of killing pytest
        raise AssertionError("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(liif.evaluation.evaluate, "evaluate", sigterm_then_evaluate)
        with pytest.raises(SystemExit) as stopped:
            main(tiny_cfg(sample_dir, tmp_path, "train.epochs=1", "scales=[2]"))  # one test scale: the test pass is not the subject
        assert stopped.value.code == 128 + signal.SIGTERM
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["status"] == "interrupted" and metrics["records"] == [] and metrics["train"]["epochs_done"] == 1
        monkeypatch.setattr(liif.evaluation.evaluate, "evaluate", real_evaluate)
        records = main(tiny_cfg(sample_dir, tmp_path, "train.epochs=1", "scales=[2]", "resume=true"))  # only the test is left
    finally:
        signal.signal(signal.SIGTERM, previous)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["records"] == records and len(records) > 0
    assert metrics["train"]["steps"] == 4  # no step was trained twice


@pytest.mark.slow
def test_the_final_test_of_task_train_tiles_within_infer_max_memory_and_tile(sample_dir, tmp_path, monkeypatch):
    """`infer.max_memory` and `infer.tile` reach the test that ends `task=train`, as they reach task=test."""
    import liif.inference.tiled
    from liif.evaluation.evaluate import evaluate
    from liif.inference.api import load_model
    from liif.training.trainer import main
    plans, real_plan = [], liif.inference.tiled.plan

    def recording_plan(*args, **kwargs):
        plans.append(real_plan(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(liif.inference.tiled, "plan", recording_plan)
    cfg = tiny_cfg(sample_dir, tmp_path, "train.epochs=1", "train.max_steps_per_epoch=1", "dataset.val=null",
                   "scales=[2]", "infer.max_memory=64MB", "infer.tile=60")
    tiled = main(cfg)
    # the test photos are 240x240 and 240x360: at x2 their LR (120x120, 120x180) cut into tiles of 60
    assert {(p.budget, len(p.rows), len(p.cols)) for p in plans} == {(64 << 20, 2, 2), (64 << 20, 2, 3)}
    plans.clear()
    model = load_model(str(tmp_path / "checkpoints" / "epoch-last.pth"), device="cpu")
    untiled = evaluate(model, cfg.dataset.test, cfg.eval_bsize, scales=[2])
    assert {len(p.rows) * len(p.cols) for p in plans} == {1}
    assert [r["psnr"] for r in tiled] == pytest.approx([r["psnr"] for r in untiled], abs=1e-4)


GOOD_STATE = {"framework": "torch", "next_epoch": 3, "step_in_epoch": 1, "loss_sum": 0.25, "steps_done": 5,
              "best_psnr": -float("inf"), "seed": 0,
              "history": [{"epoch": 1, "loss": 0.5, "lr": 1e-4, "val_psnr": None, "seconds": 1.0},
                          {"epoch": 2, "loss": 0.4, "lr": 1e-4, "val_psnr": 30.5, "seconds": 1.0}]}


@pytest.mark.parametrize("change, field", [
    ({"next_epoch": 0}, "next_epoch"), ({"next_epoch": True}, "next_epoch"), ({"step_in_epoch": 1.5}, "step_in_epoch"),
    ({"steps_done": -1}, "steps_done"), ({"loss_sum": float("inf")}, "loss_sum"), ({"loss_sum": "0"}, "loss_sum"),
    ({"best_psnr": float("nan")}, "best_psnr"), ({"history": {}}, "history"),
    ({"history": [{"epoch": 1, "val_psnr": "30"}]}, "history row"), ({"history": [{"epoch": 3}]}, "history row"),
    ({"history": [{"epoch": 1, "evil": 1}]}, "history row"), ({"history": [["epoch", 1]]}, "history row")])
def test_a_training_state_no_training_writes_is_named_not_a_type_error(change, field):
    """A checkpoint may come with a run folder from anyone: its training state is checked field by field
    before the resume uses it (`next_epoch: "2"` was a TypeError deep in the loop)."""
    from liif.errors import CheckpointError
    from liif.training.trainer import training_state
    assert training_state({"liif": GOOD_STATE}, "p")["history"] == GOOD_STATE["history"]
    with pytest.raises(CheckpointError, match=f"p: its training state is not one a training writes \\({field}="):
        training_state({"liif": {**GOOD_STATE, **change}}, "p")
    assert training_state({"epoch": 100}, "p")["next_epoch"] == 101  # an original checkpoint: complete epochs
    with pytest.raises(CheckpointError, match="epoch="):
        training_state({"epoch": "100"}, "p")
