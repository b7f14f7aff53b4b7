"""`task=train` (the main job): train a LIIF-family model, then test it.

The original recipe (L1 loss, Adam, multi-step LR, validation PSNR every `epoch_val`,
checkpoints `epoch-last`, `epoch-best` and every `epoch_save`), with what the original
lacks: a resume that continues exactly where the run stopped (mid-epoch included, the
learning rate decayed once, not twice), atomic checkpoints, a resumable checkpoint on
Ctrl-C/SIGTERM, a clear stop on a NaN loss, and seeded, framework-independent batches.

Multi-process / multi-GPU: `torchrun --nproc_per_node=N run.py ...` (PyTorch, with
DistributedDataParallel) or `mpirun -np N python run.py framework=jittor ...` (Jittor, MPI).
`train.batch_size` stays the global batch (divisible by N): every global batch, in the
single-process order, is split so rank r gets items [r::N]; the gradients are averaged over
the ranks (DDP; Jittor's optimizer), so a step equals the single-process step on the global
batch (an unevenly split last batch included: see share_of_global_batch). Rank 0 alone logs,
writes (checkpoints, history, TensorBoard, metrics.json) and evaluates.
"""
import copy
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

import numpy as np
from tqdm import tqdm

from liif import backends
from liif.models import checkpoint, registry
from liif.run import recovery, rundir, slurm, tblog, untrusted
from liif.io import durable
from liif.config import FrameworkConfig, RunConfig, TrainConfig
from liif.data import make_train_sets
from liif.errors import CheckpointError, ConfigError, OutputError, TrainingDiverged
from liif.training.step import train_step
from liif.models.init import initial_state
from liif.run.progress import Estimate, duration
from liif.run.record import HISTORY_TYPES, RunRecord, TestResult, TrainSummary
from liif.training.schedule import learning_rate
from liif.value_range import from_model_range, to_model_range

if TYPE_CHECKING:  # imported where used, at run time: inference is a layer below, loaded on demand
    from liif.inference.api import Model

log = logging.getLogger(__name__)

LONG_ON_CPU_S = 15 * 60  # a CPU training estimated longer than this gets the profile=smoke hint


def main(config: RunConfig, choices: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """`python run.py task=train ...`: train, then test the trained model.

    Args:
        config: the whole run's config.
        choices: Hydra's config-group choices (for the run's record).

    Returns:
        The final test's records (see `liif.evaluation.evaluate.evaluate`).
    """
    from liif.evaluation.evaluate import evaluate_as_configured, print_run_files, print_table
    backend = backends.get(config.framework.name)
    rank, _ = backend.distributed_init()  # (0, 1) unless launched by torchrun (torch) or mpirun (jittor)
    if rank != 0:  # the other ranks neither claim nor write the run directory
        logging.getLogger().setLevel(logging.WARNING)
    out_dir = str(config.output_dir)
    if not config.resume and slurm.requeued(out_dir):  # SLURM started this job again: it continues where it stopped
        config = dataclasses.replace(config, resume=True)
    if config.resume:  # the folder may be a copy of anyone's: nothing is read or written through a link out of it
        untrusted.check_folder(out_dir)
    trainer, records, stopped_by = None, [], None
    try:
        with rundir.RunLifecycle(out_dir, RunRecord.for_run(config, "train", choices), config=asdict(config),
                                 resuming=bool(config.resume), owner=rank == 0) as run:
            if rank == 0:
                recovery.prepare(out_dir, resuming=bool(config.resume))
                durable.crash_point("start")
            backend.barrier()  # rank 0 has claimed the directory
            trainer = Trainer.from_config(config, out_dir)
            run.record.model_spec = trainer.spec
            try:
                stopped_by = trainer.fit()
                if stopped_by is None and rank == 0:
                    with rundir.interruptible():
                        records = evaluate_as_configured(trainer.as_model(), config, out_dir)
                        trainer.log_samples(os.path.join(out_dir, "samples"))
                    run.record.records = [TestResult(**r) for r in records]
            except rundir.Interrupted as e:  # during the final test: the training itself is saved
                stopped_by, records = e.signum, []
            finally:
                run.record.train = TrainSummary(**trainer.summary())
            if stopped_by is not None:
                run.interrupted(stopped_by)
    finally:
        if rank != 0:
            rundir.remove_hydra_only_folder(out_dir)
        backend.distributed_close()
    if stopped_by is not None:
        if rank == 0:
            message = (f"interrupted by {signal.Signals(stopped_by).name}: a resumable checkpoint is in "
                       f"{trainer.ckpt_dir}; continue with: python run.py resume={out_dir}")
            print(message, file=sys.stderr)  # once: the console, not also through the log's console handler
            rundir.log_to_files(log, logging.WARNING, message)
        rundir.forward_to_launcher(stopped_by)  # submitit's SIGUSR2: it requeues the job, which continues here
        raise SystemExit(128 + stopped_by)
    if rank == 0:
        print_table(records)
        print_run_files(out_dir, trainer.summary()["best_val_psnr"])
    return records


class Trainer:
    """Trains a model, writing checkpoints (and TensorBoard logs) under `out_dir`. No Hydra needed:

        trainer = Trainer(spec, train_set, "runs/a", train=TrainConfig(epochs=2), val_set=val_set, device="cpu")
        trainer.fit()
        model = trainer.as_model()          # a liif.inference.api.Model, for evaluate() or upscale()

    `Trainer.from_config(run_config)` builds it all from a liif.config.RunConfig (what
    `python run.py` does).

    Args:
        model_spec: the original `{name, args}` of the model.
        train_set: a wrapped dataset (items: dicts of inp, coord, cell, gt), e.g. from
            `liif.data.make_train_sets`.
        out_dir: the run directory.
        train: the recipe (None: the paper's).
        val_set: the validation set, like `train_set` (None: no validation).
        framework: the framework and its speed options (None: PyTorch, float32).
        device: 'auto', 'cpu', 'cuda' ...
        seed: the initial weights' and the batches' seed.
        resume: None, True (this `out_dir`'s last checkpoint), or a run directory or checkpoint
            path to continue.
        checkpoint: weights to start from (a fresh training otherwise).
        eval_bsize: queries per decoder call in validation.
    """

    history: List[Dict[str, Any]]
    step_losses: List[float]
    writer: Any

    def __init__(self, model_spec: Mapping[str, Any], train_set: Any, out_dir: "Union[str, os.PathLike[str]]",
                 train: Optional[TrainConfig] = None, val_set: Any = None, framework: Optional[FrameworkConfig] = None,
                 device: str = "auto", seed: int = 0, resume: "Union[None, bool, str, os.PathLike[str]]" = None,
                 checkpoint: "Union[None, str, os.PathLike[str]]" = None, eval_bsize: int = 30000) -> None:
        self.recipe = train if train is not None else TrainConfig()
        fw = framework if framework is not None else FrameworkConfig()
        self.seed, self.eval_bsize = seed, eval_bsize
        self.backend = backend = backends.get(fw.name)
        backend.set_threads(fw.threads)
        self.rank, self.world = backend.distributed_init()
        if self.recipe.batch_size % self.world:
            raise ConfigError(f"train.batch_size={self.recipe.batch_size} is the global batch and must be divisible by the "
                              f"number of processes ({self.world})")
        self.device = backend.device(device)
        self.out_dir, self.ckpt_dir = os.fspath(out_dir), os.path.join(os.fspath(out_dir), "checkpoints")
        self.spec = copy.deepcopy(dict(model_spec))
        self.train_set, self.val_set = train_set, val_set
        backend.seed(seed)
        self.net = registry.make(self.spec, backend)
        # the same initial weights on every framework: seed= fixes the starting model, not only the data
        backend.load_state_dict_numpy(self.net, initial_state(backend.state_dict_numpy(self.net), seed))
        self.precision, self.infer_precision, self.pin_memory = fw.precision, fw.infer_precision, fw.pin_memory
        for precision in (self.precision, self.infer_precision):
            backend.autocast(precision, self.device)  # an unsupported value fails now, not after an epoch
        self.net = backend.to_dtype(backend.to_device(self.net, self.device), fw.dtype)
        self.net = backend.optimize(self.net, channels_last=fw.channels_last, compile=fw.compile)
        self.opt = backend.adam(self.net, self.recipe.lr)
        self.epoch, self.step_in_epoch, self.loss_sum = 1, 0, 0.0  # next epoch/step to run
        self.history, self.best_psnr, self.steps_done = [], -math.inf, 0
        self.step_losses = []  # this process's losses, step by step (tests, alignment)
        resume_from = resume_path(resume, self.out_dir) if resume else None
        if resume_from:  # every rank loads the same checkpoint
            self.load(resume_from)
        elif resume:
            log.warning("nothing to resume yet: %s was stopped before its first checkpoint; training from the start",
                        self.out_dir)
        elif checkpoint:
            self.load_weights(checkpoint)
        self.writer = None
        if self.rank == 0:
            self.recover(resume_from)
            # the events after the checkpoint's step (those of the steps run again) are hidden
            self.writer = tblog.open_writer(os.path.join(self.out_dir, "tb"), purge_step=self.steps_done + 1)
        self.train_net = backend.wrap_distributed(self.net)  # DDP when distributed; self.net is what is saved

    @classmethod
    def from_config(cls, config: RunConfig, out_dir: Optional[str] = None) -> "Trainer":
        """The trainer of a run's config, its datasets built through the registry.

        Args:
            config: the whole run's config.
            out_dir: the run directory (None: `config.output_dir`).
        """
        out_dir = out_dir or config.output_dir
        if not out_dir:  # a config composed by hand, outside a Hydra run
            raise ConfigError("Trainer.from_config needs out_dir= or config.output_dir: the folder for the run's files")
        train_set, val_set = make_train_sets(config.dataset, config.train, config.scale, seed=config.seed,
                                             on_bad_file=config.on_bad_file, data_dir=config.paths.data_dir)
        return cls(config.model.spec(), train_set, out_dir, train=config.train, val_set=val_set,
                   framework=config.framework, device=config.device, seed=config.seed, resume=config.resume,
                   checkpoint=config.checkpoint, eval_bsize=config.eval_bsize)

    # ---- the loop --------------------------------------------------------------------
    def fit(self) -> Optional[int]:
        """Train to `train.epochs`, from where the trainer stands (a resumed run: mid-epoch included).

        Returns:
            None, or the number of the signal (SIGINT, SIGTERM) that interrupted it, after a
            resumable checkpoint was saved.
        """
        from liif.data.loader import iterate_batches, len_batches, prefetch
        recipe, backend = self.recipe, self.backend
        like = next(iter(self.net.parameters()))
        prepare = lambda batch: backend.batch_to_device(normalise(batch), like, self.pin_memory)  # noqa: E731
        stop = _StopFlag()
        n_steps = len_batches(len(self.train_set), recipe.batch_size, world_size=self.world)
        if recipe.max_steps_per_epoch:
            n_steps = min(n_steps, recipe.max_steps_per_epoch)
        self.estimate = Estimate("training", max(recipe.epochs - self.epoch + 1, 0) * n_steps - self.step_in_epoch, "step",
                                 note="; validation and the final test come on top")
        with stop:
            while self.epoch <= recipe.epochs:
                lr = learning_rate(self.epoch, recipe.lr, recipe.milestones, recipe.gamma)
                backend.set_lr(self.opt, lr)
                started = time.time()
                # resumed mid-epoch: the epoch starts at its first step not yet done, with the batches
                # an uninterrupted run gets there (the loader makes none of the steps already done)
                batches = iterate_batches(self.train_set, recipe.batch_size, shuffle=True, seed=self.seed,
                                          epoch=self.epoch, num_workers=recipe.num_workers, rank=self.rank,
                                          world_size=self.world, start_batch=self.step_in_epoch, stop_batch=n_steps)
                batches = prefetch(batches, prepare) if recipe.prefetch else map(prepare, batches)
                bar = tqdm(total=n_steps, initial=self.step_in_epoch, desc=f"epoch {self.epoch}/{recipe.epochs}",
                           leave=False, disable=None if self.rank == 0 else True)
                for step, batch in enumerate(batches, start=self.step_in_epoch):
                    share = self.share_of_global_batch(step, len(batch["inp"]))
                    loss = train_step(backend, self.train_net, self.opt, batch, self.precision, share)
                    if self.world > 1:
                        loss = backend.all_reduce_mean(loss)  # the global batch's loss
                    if not math.isfinite(loss):
                        raise TrainingDiverged(f"the loss became {loss} at epoch {self.epoch}, step {step + 1}: training "
                                        f"stopped; the last good checkpoint is in {self.ckpt_dir} (try a lower train.lr)")
                    self.loss_sum += loss
                    self.step_losses.append(loss)
                    self.step_in_epoch, self.steps_done = step + 1, self.steps_done + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
                    if self.rank == 0:
                        self.suggest_smoke_profile(self.estimate.update())
                    if self.writer:
                        self.writer.add_scalar("loss/step", loss, self.steps_done)
                    durable.crash_point("step")
                    stopping = stop.signum is not None
                    if self.world > 1:  # every rank stops after the same step
                        stopping = backend.all_reduce_mean(float(stopping)) > 0
                    if stopping:
                        bar.close()
                        if self.writer:
                            self.writer.flush()  # the steps up to this checkpoint: not run again on resume
                        self.save("epoch-last.pth")
                        backend.barrier()
                        return stop.signum or signal.SIGTERM
                bar.close()
                self.end_epoch(lr, n_steps, time.time() - started)
        return None

    def suggest_smoke_profile(self, seconds_left: Optional[float]) -> None:
        """A CPU training estimated at more than LONG_ON_CPU_S: say how to check the pipeline in a minute."""
        if seconds_left is None or seconds_left <= LONG_ON_CPU_S or str(self.device) != "cpu":
            return
        log.warning("this training needs about %s on this CPU; to try the whole pipeline first, add profile=smoke "
                    "(the same experiment shrunk to about a minute; its numbers are meaningless). A GPU "
                    "(device=cuda) is the real place for it.", duration(seconds_left))

    def share_of_global_batch(self, step: int, n_local: int) -> float:
        """The factor on this rank's loss that makes the ranks' averaged gradients those of the mean
        over the whole global batch: n_local * world / n_global. It is 1 unless a last partial batch
        splits unevenly (3 items over 2 ranks: 2 and 1), where a plain average of the ranks' means
        would weight the lone item twice as much as in one process."""
        if self.world == 1:
            return 1.0
        n_global = min(self.recipe.batch_size, len(self.train_set) - step * self.recipe.batch_size)
        return n_local * self.world / n_global

    def end_epoch(self, lr: float, n_steps: int, seconds: float) -> None:
        """The epoch's row, then rank 0 writes in the order liif/run/recovery.py relies on: TensorBoard,
        `epoch-last.pth` (the commit), then what derives from it (epoch-N, epoch-best, history.csv)."""
        recipe, epoch = self.recipe, self.epoch
        row: Dict[str, Any] = {"epoch": epoch, "loss": self.loss_sum / max(n_steps, 1), "lr": lr, "val_psnr": None,
               "seconds": round(seconds, 2)}
        if self.val_set is not None and epoch % recipe.epoch_val == 0 and self.rank == 0:
            row["val_psnr"] = self.validate()
            self.best_psnr = max(self.best_psnr, row["val_psnr"])  # before the commit, which holds it
        self.history.append(row)
        self.epoch, self.step_in_epoch, self.loss_sum = epoch + 1, 0, 0.0
        if self.rank == 0:
            if self.writer:  # on the step axis, as loss/step: resume's purge_step then covers them too
                for key in ("loss", "lr", "val_psnr"):
                    if row[key] is not None:
                        self.writer.add_scalar(key, row[key], self.steps_done)
                self.writer.flush()
            durable.crash_point("tensorboard")
            self.save("epoch-last.pth")
            recovery.derive_from_last(self.out_dir, self.history, recipe.epoch_save)
            val = f", val PSNR {row['val_psnr']:.3f} dB" if row["val_psnr"] is not None else ""
            left = self.estimate.left_s()
            left = f", about {duration(left)} left" if left is not None and epoch < recipe.epochs else ""
            log.info("epoch %d/%d: loss %.4f, lr %.2e%s (%.1f s%s)", epoch, recipe.epochs, row["loss"], lr, val,
                     seconds, left)
        self.backend.barrier()  # the checkpoints are written before any rank goes on

    def recover(self, resumed_from: Optional[str]) -> None:
        """Rank 0, before training: redo what a crash after the last commit cut short (the
        derived files of its epoch); history.csv always follows the checkpoint's rows."""
        own_last = os.path.join(self.ckpt_dir, "epoch-last.pth")
        if resumed_from and os.path.realpath(resumed_from) == os.path.realpath(own_last) and self.step_in_epoch == 0:
            recovery.derive_from_last(self.out_dir, self.history, self.recipe.epoch_save)
        else:  # mid-epoch (its epoch's files were complete before it), another run's checkpoint, or none
            recovery.rewrite_history(self.out_dir, self.history)

    def validate(self) -> float:
        """The original's training-time validation: RGB PSNR on the sampled pixels of
        fixed random patches (the draws of epoch 0, so every validation sees the same)."""
        from liif.data.loader import iterate_batches
        from liif.evaluation.metrics import psnr
        model, total, count = self.as_model(), 0.0, 0
        for batch in iterate_batches(self.val_set, self.recipe.val_batch_size, seed=self.seed, epoch=0):
            pred = model.query(to_model_range(batch["inp"]), batch["coord"], batch["cell"], bsize=self.eval_bsize)
            n = len(pred)
            total += psnr(np.clip(from_model_range(pred), 0, 1), batch["gt"]) * n
            count += n
        return total / count

    def log_samples(self, folder: str) -> None:
        """The test-time sample images (one per dataset and scale) into TensorBoard."""
        if not self.writer or not os.path.isdir(folder):
            return
        from liif.data.image_folder import read_image
        for name in sorted(os.listdir(folder)):
            if name.endswith(".png"):
                self.writer.add_image(f"samples/{name[:-4]}", read_image(os.path.join(folder, name)), self.steps_done,
                                      dataformats="HWC")
        self.writer.flush()

    def as_model(self) -> "Model":
        """The network being trained as a `liif.inference.api.Model` (the same weights, not a copy),
        for `evaluate` or `upscale`; it predicts in `framework.infer_precision`."""
        from liif.inference.api import Model
        return Model(self.net, self.backend, self.spec, self.device, self.infer_precision)

    # ---- checkpoints -----------------------------------------------------------------
    def save(self, name: str) -> None:
        """Rank 0 only; the unwrapped model (no DDP `module.` prefixes)."""
        if self.rank != 0:
            return
        backend = self.backend
        state = {"framework": self.backend.name, "next_epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                 "loss_sum": self.loss_sum, "steps_done": self.steps_done, "best_psnr": self.best_psnr,
                 "history": self.history, "seed": self.seed}
        optimizer = {"name": "adam", "args": {"lr": self.recipe.lr}, "sd": backend.optimizer_state_numpy(self.opt)}
        obj = checkpoint.envelope(self.spec, backend.state_dict_numpy(self.net), optimizer, epoch=self.epoch - 1,
                                  extra=state)
        try:
            checkpoint.write(obj, os.path.join(self.ckpt_dir, name))
        except OutputError as e:  # a full disk: say that nothing written before is lost
            raise OutputError(f"{e}; the checkpoints already written are intact: continue with resume={self.out_dir}") from None

    def load_weights(self, path: "Union[str, os.PathLike[str]]") -> Dict[str, Any]:
        """The weights of the checkpoint `path`, which must hold the config's model; returns the checkpoint."""
        return checkpoint.load(str(path), self.backend, expected=self.spec, expected_label="the config's model",
                               net=self.net).ckpt

    def load(self, path: str) -> None:
        """Continue from checkpoint `path`: its weights, optimizer state, epoch, step and history."""
        ckpt = self.load_weights(path)
        state = training_state(ckpt, path)
        optimizer = ckpt.get("optimizer")
        sd = optimizer.get("sd") if isinstance(optimizer, dict) else None
        if isinstance(sd, dict) and sd.get("param_groups"):
            try:
                self.backend.load_optimizer_state_numpy(self.opt, sd)
            except ValueError as e:  # the backends' strict check of the saved optimizer state
                raise CheckpointError(f"{path}: its optimizer state does not fit the model: {e}") from None
        self.epoch, self.step_in_epoch = state["next_epoch"], state["step_in_epoch"]
        self.loss_sum, self.steps_done = float(state["loss_sum"]), state["steps_done"]
        self.history = [dict(row) for row in state["history"]]
        # the history's best too: the history is the record, and a checkpoint's best_psnr can miss its own
        # epoch's validation (one saved before that value was counted in)
        psnrs = [row["val_psnr"] for row in self.history if row.get("val_psnr") is not None]
        self.best_psnr = max([float(state["best_psnr"]), *psnrs])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step_in_epoch)

    def summary(self) -> Dict[str, Any]:
        """The training's outcome, as liif.run.record.TrainSummary's fields."""
        return {"epochs": self.recipe.epochs, "epochs_done": self.epoch - 1, "steps": self.steps_done,
                "best_val_psnr": None if self.best_psnr == -math.inf else self.best_psnr, "history": self.history}


def normalise(batch: Mapping[str, Any]) -> Dict[str, Any]:
    """The original data_norm: inputs and targets mapped from [0, 1] to [-1, 1]."""
    return {"inp": to_model_range(batch["inp"]), "coord": batch["coord"], "cell": batch["cell"],
            "gt": to_model_range(batch["gt"])}


def resume_path(resume: "Union[bool, str, os.PathLike[str]]", out_dir: str) -> Optional[str]:
    """resume=true: this run's own last checkpoint; resume=DIR or resume=FILE: that one. None when
    the run's own folder began a training that was stopped before its first checkpoint."""
    target = out_dir if resume is True else str(resume)
    path = os.path.join(target, "checkpoints", "epoch-last.pth") if os.path.isdir(target) else target
    if path != target and os.path.lexists(path) and not untrusted.inside(path, target):
        raise CheckpointError(f"{path} is a link out of {target}: a run folder's checkpoint must be its own "
                              "(resume=<checkpoint.pth> names a file anywhere)")
    own_ckpt_dir = os.path.join(out_dir, "checkpoints")
    if (not os.path.isfile(path) and os.path.isdir(target) and os.path.realpath(target) == os.path.realpath(out_dir)
            and os.path.isdir(own_ckpt_dir) and not recovery.holds_checkpoints(own_ckpt_dir)):
        return None
    if not os.path.lexists(path):  # anything else there (a folder, a fifo) is named by checkpoint.read
        raise CheckpointError(f"nothing to resume: {path} does not exist (resume=<run dir> or resume=<checkpoint.pth>; "
                        "resume=true resumes the run in hydra.run.dir)")
    return path


def training_state(ckpt: Mapping[str, Any], path: str) -> Dict[str, Any]:
    """Where checkpoint `ckpt` continues from: ours (its 'liif' entry: next_epoch, step_in_epoch,
    loss_sum, steps_done, best_psnr and the history rows) or an original one's (complete epochs).
    A checkpoint may come with a run folder from anyone: a field no training writes is a
    CheckpointError naming it, not a TypeError in the middle of the resume."""
    def bad(field: str, value: Any) -> CheckpointError:
        shown = repr(value)
        return CheckpointError(f"{path}: its training state is not one a training writes ({field}="
                               f"{shown if len(shown) <= 60 else shown[:60] + '...'}); resume from another checkpoint")

    def count(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    def number(value: Any) -> bool:  # best_psnr is -inf before any validation
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)

    state = ckpt.get("liif")
    if not state:  # an original checkpoint: epochs are complete, no mid-epoch state
        if not count(ckpt.get("epoch"), 0):
            raise bad("epoch", ckpt.get("epoch"))
        return {"next_epoch": ckpt["epoch"] + 1, "step_in_epoch": 0, "loss_sum": 0.0, "steps_done": 0,
                "best_psnr": -math.inf, "history": []}
    if not isinstance(state, dict):
        raise bad("liif", state)
    state = {"steps_done": 0, "best_psnr": -math.inf, "history": [], **state}
    for field, ok in (("next_epoch", count(state.get("next_epoch"), 1)),
                      ("step_in_epoch", count(state.get("step_in_epoch"), 0)),
                      ("steps_done", count(state["steps_done"], 0)),
                      ("loss_sum", number(state.get("loss_sum")) and math.isfinite(state["loss_sum"])),
                      ("best_psnr", number(state["best_psnr"])), ("history", isinstance(state["history"], list))):
        if not ok:
            raise bad(field, state.get(field))
    last = 0
    for row in state["history"]:  # each row an epoch's, in order, before the next epoch: history.csv's fields
        if not (isinstance(row, dict) and set(row) <= set(HISTORY_TYPES) and count(row.get("epoch"), last + 1)
                and row["epoch"] < state["next_epoch"]
                and all(k == "epoch" or v is None or number(v) for k, v in row.items())):
            raise bad("history row", row)
        last = row["epoch"]
    return state


class _StopFlag(rundir.on_signals):
    """Turns SIGINT/SIGTERM (and a launcher's SIGUSR2: `rundir.stop_signals`) into a flag checked after each step, so the loop can save a
    resumable checkpoint and exit instead of dying mid-write. The signal is acknowledged at
    once (a step may take a while), the outcome is printed once when the loop has stopped."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        super().__init__(self._set, announce=self._acknowledge)

    def _set(self, signum: int) -> None:
        self.signum = signum

    @staticmethod
    def _acknowledge(signum: int) -> None:
        message = f"{signal.Signals(signum).name} received: stopping after this step, saving a checkpoint"
        tqdm.write(message, file=sys.stderr)  # above the progress bar
        rundir.log_to_files(log, logging.WARNING, message)
