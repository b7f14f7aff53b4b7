"""`task=test`: PSNR/SSIM over datasets x scales with the original test protocols.

For each test set of the dataset config and each scale: x2-x4 read the set's LR files
when they exist (the paired wrapper), other scales (and sets without LR files) downsample
the HR with Pillow bicubic after cropping it to a multiple of the scale, exactly as the
original test configs. Each image is encoded and decoded in tiles within `infer.max_memory`
(liif/inference/tiled.py; the untiled result), in chunks of `eval_bsize` queries, clamped
to [0, 1] and compared unquantised, one image at a time (the original's batch size 1).
The cell given to the model follows `test.cell_clip` (liif/evaluation/protocol.py: LTE's
authors clip it at x4, LIIF's do not); each record says which clip its number used.
Bicubic upsampling of the same LR is measured beside the model as the floor to beat.
"""
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from liif.config import RunConfig, TestSetConfig
from liif.evaluation import metrics
from liif.evaluation import protocol
from liif.errors import CheckpointError
from liif.run.record import RunRecord, TestResult
from liif.value_range import from_model_range, to_model_range

if TYPE_CHECKING:  # imported where used, at run time
    from liif.inference.api import Model
    from liif.run.progress import Estimate

log = logging.getLogger(__name__)


def main(config: RunConfig, choices: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """`python run.py task=test checkpoint=...`: test a checkpoint (RunConfig checks there is one).

    Args:
        config: the whole run's config.
        choices: Hydra's config-group choices (for the run's record).

    Returns:
        The records, as `evaluate` returns them.
    """
    from liif.inference.api import infer_options, load_model
    from liif.run.labels import model_label
    from liif.run import slurm
    from liif.run.rundir import Interrupted, RunLifecycle, forward_to_launcher, interruptible
    out_dir = str(config.output_dir)
    try:  # a test that SLURM started again (a requeue) runs again in its folder
        with RunLifecycle(out_dir, RunRecord.for_run(config, "test", choices), config=asdict(config),
                          resuming=slurm.requeued(out_dir)) as run:
            model = load_model(config.checkpoint, framework=config.framework.name, device=config.device,
                               **infer_options(config.framework))
            run.record.model_spec = model.spec
            # the checkpoint's model, not the config's default: the report files the run in the right row
            run.record.model = model_label(run.record.model, model.spec, config.model)
            with interruptible():
                records = evaluate_as_configured(model, config, out_dir)
            run.record.records = [TestResult(**r) for r in records]
    except Interrupted as e:
        print(f"{e}; metrics.json says so; run the test again to finish it", file=sys.stderr)
        forward_to_launcher(e.signum)  # submitit's SIGUSR2: it requeues the job
        raise SystemExit(128 + e.signum) from None
    print_table(records)
    print_run_files(out_dir)
    return records


def evaluate_as_configured(model: "Model", config: RunConfig, out_dir: Optional[str]) -> List[Dict[str, Any]]:
    """The test pass of a run, `task=test`'s and the one that ends `task=train`: `model` on
    `config`'s (a liif.config.RunConfig) test sets and scales, with its query batch, bad-file
    policy and `infer` tiling (max_memory, tile). Returns `evaluate`'s records."""
    from liif.inference.api import tiling_options
    return evaluate(model, config.dataset.test, config.eval_bsize, out_dir, scales=config.scales,
                    on_bad_file=config.on_bad_file, tiling=tiling_options(config.infer), cell_clip=config.test.cell_clip)


def evaluate(model: "Model", test_sets: Sequence[TestSetConfig], eval_bsize: int = 30000, out_dir: Optional[str] = None,
             scales: Optional[Sequence[int]] = None, on_bad_file: str = "error",
             tiling: Optional[Mapping[str, Any]] = None, cell_clip: protocol.CellClip = None) -> List[Dict[str, Any]]:
    """PSNR and SSIM of `model` on each test set at each scale, with the original test protocols.

    Args:
        model: the model to test.
        test_sets: the `dataset.test` entries.
        eval_bsize: queries per decoder call.
        out_dir: where the first image of each (set, scale) goes, under `samples/` (None: nowhere).
        scales: the scales to test (None: each set's own).
        on_bad_file: 'error' or 'skip' (an unreadable image).
        tiling: `Model.query`'s max_memory and tile (liif/inference/tiled.py; None: the defaults).
        cell_clip: `test.cell_clip` (liif.config.TestConfig): None = the model family's published
            protocol, a number c = the cell of scale s times max(s / c, 1), False = never.

    Returns:
        One record per (set, scale): a dict of liif.run.record.TestResult's fields (`cell_clip`: the clip used).
    """
    from liif.data import layouts
    from liif.run.progress import Estimate
    runs = []  # every (set, scale) is opened first: a missing folder fails now, and the total is known
    for entry in test_sets:
        for scale in (scales if scales is not None else entry.scales):
            lr_dir = entry.lr.format(scale=scale) if entry.lr else None
            eval_type = _eval_type(entry, scale)
            dataset = layouts.test_set(entry.hr, lr_dir, scale, layout_text=expected_layout(entry),
                                       on_bad_file=on_bad_file, split_file=entry.split_file, split_key=entry.split_key,
                                       shave=metrics.shave_of(*metrics.parse_eval_type(eval_type)), eval_type=eval_type)
            runs.append((entry, scale, dataset))
    estimate = Estimate("test", sum(len(d) for _, _, d in runs), "image")
    clip = protocol.cell_clip_for((model.spec or {}).get("name"), cell_clip)
    records = []
    for entry, scale, dataset in runs:
        eval_type = _eval_type(entry, scale)
        record = evaluate_set(model, dataset, eval_type, eval_bsize, f"{entry.name} x{scale}",
                              sample_dir=os.path.join(out_dir, "samples") if out_dir else None, tiling=tiling,
                              estimate=estimate, cell_factor=protocol.cell_factor(scale, clip))
        record.update(dataset=entry.name, scale=int(scale), lr_source="files" if _is_paired(dataset) else "pillow-bicubic",
                      cell_clip=clip)
        records.append(record)
        log.info("%s x%d (%s%s): PSNR %.4f dB, SSIM %s, bicubic %.4f dB, %d images", entry.name, scale, eval_type,
                 "" if clip is None else f", cell clipped at x{clip}", record["psnr"], _ssim_text(record["ssim"]),
                 record["psnr_bicubic"], record["n_images"])
    return records


def _eval_type(entry: TestSetConfig, scale: int) -> str:
    return "none" if entry.protocol == "none" else f"{entry.protocol}-{scale}"


def _ssim_text(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.4f}"  # None: not defined for an image of the set (metrics.ssim)


def expected_layout(entry: TestSetConfig) -> str:
    text = f"{entry.hr}/*.png"
    if entry.lr:
        text += f"\n{entry.lr.format(scale='{2,3,4}')}/*.png   (optional: used for x2-x4 when present; " \
                "otherwise the HR is downsampled)"
    return text


def _is_paired(dataset: Any) -> bool:
    return type(dataset).__name__ == "SRImplicitPaired"


def evaluate_set(model: "Model", dataset: Any, eval_type: str, bsize: int = 30000, desc: str = "test",
                 sample_dir: Optional[str] = None, tiling: Optional[Mapping[str, Any]] = None,
                 estimate: "Optional[Estimate]" = None, cell_factor: float = 1.0) -> Dict[str, Any]:
    """Mean PSNR/SSIM (and bicubic's PSNR) over `dataset`. `tiling`: `Model.query`'s max_memory and
    tile options (default: auto). With `sample_dir`, its first image is saved there as the model's
    output (`<desc>.png`) and as a comparison with the input, bicubic and the ground truth
    (`<desc>_compare.png`, liif/evaluation/compare.py). `estimate` (liif.run.progress.Estimate) counts the images.
    `cell_factor`: the samples' cells are multiplied by it (liif/evaluation/protocol.py)."""
    psnrs, ssims, bicubics = [], [], []
    started = time.time()
    for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=None):
        sample = dataset[i]
        sr, hr, shape = predict_image(model, sample, bsize, tiling, cell_factor)
        if not np.isfinite(sr).all():  # nan survives the clip: it would give a black sample and a nan PSNR
            raise CheckpointError(f"{desc}: the model predicts non-finite values (nan or inf) for image {i + 1}; the test "
                                  "stops as failed (are the checkpoint's weights sane?)")
        bicubic = bicubic_upsample(sample["inp"], shape)
        psnrs.append(metrics.psnr(sr, hr, eval_type))
        ssims.append(metrics.ssim(sr, hr, eval_type))
        if ssims[-1] is None and ssims.count(None) == 1:
            log.warning("SSIM is not defined for %s: image %d is %dx%d, smaller than SSIM's %dx%d window after %s's "
                        "shave; the set's SSIM is left out (null in metrics.json)", desc, i + 1, shape[0], shape[1],
                        metrics.SSIM_WINDOW, metrics.SSIM_WINDOW, eval_type)
        bicubics.append(metrics.psnr(bicubic, hr, eval_type))
        if sample_dir and i == 0:
            from liif.evaluation.compare import write_comparison
            name = sample_name(desc)
            save_sample(sr, os.path.join(sample_dir, name))
            write_comparison(os.path.join(sample_dir, name[:-len(".png")] + "_compare.png"), sample["inp"], bicubic, sr,
                             hr, max(1, round(shape[0] / sample["inp"].shape[1])))
        if estimate:
            estimate.update()
    return {"eval_type": eval_type, "psnr": float(np.mean(psnrs)),
            "ssim": None if None in ssims else float(np.mean(ssims)),  # a mean over some images would not compare
            "psnr_bicubic": float(np.mean(bicubics)), "n_images": len(psnrs),
            "seconds": round(time.time() - started, 3)}


def sample_name(desc: str) -> str:
    """A file name for the sample of `desc` ('<set name> x<scale>'): the set name comes from the config,
    so separators and leading dots are replaced (dataset.name=../x must not write outside samples/)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in desc.replace(" ", "_")).lstrip(".")
    return (name or "sample") + ".png"


def predict_image(model: "Model", sample: Mapping[str, np.ndarray], bsize: int,
                  tiling: Optional[Mapping[str, Any]] = None,
                  cell_factor: float = 1.0) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
    """Whole-image prediction in [0, 1] as (1, 3, H, W), the ground truth likewise, and (H, W).
    The image is encoded in tiles when it does not fit `tiling["max_memory"]` (same output).
    The model gets the sample's cell times `cell_factor` (LTE's cell clip: max(s / 4, 1))."""
    inp = to_model_range(sample["inp"])[None]
    cell = sample["cell"][None]
    if cell_factor != 1:  # original (LTE test.py): cell * max(scale / scale_max, 1), in the cell's float32
        cell = cell * np.asarray(cell_factor, dtype=cell.dtype)
    pred = model.query(inp, sample["coord"][None], cell, bsize=bsize, **(tiling or {}))
    pred = np.clip(from_model_range(pred), 0, 1)
    # original: the output shape is inferred from the query count (same ratio on both axes)
    ih, iw = sample["inp"].shape[-2:]
    s = math.sqrt(sample["coord"].shape[0] / (ih * iw))
    shape = (round(ih * s), round(iw * s))
    to_image = lambda x: x.reshape(1, shape[0], shape[1], 3).transpose(0, 3, 1, 2)  # noqa: E731
    return to_image(pred), to_image(sample["gt"][None]), shape


def bicubic_upsample(inp: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """The LR (3, h, w) in [0, 1] upsampled by Pillow bicubic to `shape`, as (1, 3, H, W)."""
    from liif.data.resize import resize_bicubic
    lr = np.round(inp.transpose(1, 2, 0) * 255).astype(np.uint8)
    up = resize_bicubic(lr, tuple(shape)).astype(np.float32) / 255
    return up.transpose(2, 0, 1)[None]


def save_sample(sr: np.ndarray, path: str) -> None:
    from liif.io.outputs import write_image
    write_image(np.round(sr[0].transpose(1, 2, 0) * 255).astype(np.uint8), path)


def print_run_files(out_dir: Optional[str], best_psnr: Optional[float] = None) -> None:
    """The closing lines: where the run folder is and what to open in it first."""
    if not out_dir:
        return
    rel = lambda *p: os.path.join(*p)  # noqa: E731
    lines = [f"run folder: {os.path.abspath(out_dir)}"]
    ckpt = os.path.join(out_dir, "checkpoints")
    if os.path.isfile(rel(ckpt, "epoch-best.pth")):
        best = f" (best validation PSNR {best_psnr:.2f} dB)" if best_psnr is not None else ""
        lines.append(f"  checkpoints/epoch-best.pth{best}: test or demo with checkpoint=<this file>")
    if os.path.isfile(rel(ckpt, "epoch-last.pth")):
        lines.append("  checkpoints/epoch-last.pth: the last epoch; more epochs: python run.py "
                     f"resume={out_dir} train.epochs=N")
    samples = rel(out_dir, "samples")
    if os.path.isdir(samples) and any(n.endswith("_compare.png") for n in os.listdir(samples)):
        lines.append("  samples/*_compare.png: input | bicubic | model | ground truth per scale, with PSNRs")
    lines.append("  metrics.json" + (", history.csv" if os.path.isfile(rel(out_dir, "history.csv")) else "") +
                 ": every number above")
    if os.path.isdir(rel(out_dir, "tb")):
        lines.append(f"  tb/: curves and comparisons: tensorboard --logdir {os.path.join(out_dir, 'tb')}")
    print("\n".join(lines))


def print_table(records: Sequence[Mapping[str, Any]]) -> None:
    if not records:
        return
    clipped = any(r.get("cell_clip") is not None for r in records)  # the cell protocol, when not LIIF's
    lines = [f"{'dataset':<12}{'scale':>6}  {'eval_type':<13}{'PSNR':>9}{'bicubic':>9}{'SSIM':>8}{'images':>8}"
             + (f"  {'cell clip':<9}" if clipped else "")]
    for r in records:
        clip = r.get("cell_clip")
        lines.append(f"{r['dataset']:<12}{'x' + str(r['scale']):>6}  {r['eval_type']:<13}{r['psnr']:>9.3f}"
                     f"{r['psnr_bicubic']:>9.3f}{_ssim_text(r['ssim']):>8}{r['n_images']:>8}"
                     + (f"  {'none' if clip is None else 'x' + str(clip):<9}" if clipped else ""))
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # the reader went away (`... | head -1`); the results are in metrics.json
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
