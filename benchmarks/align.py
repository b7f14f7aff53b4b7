"""Alignment of the two backends: the same model, the same initial weights, the same batches.

    python benchmarks/align.py [--steps 500] [--dtype float32|float64] [--out docs/alignment] [overrides ...]

Builds the run config (default: EDSR-baseline-LIIF on the embedded sample set, batch 4 of
24x24 patches so that 500 steps per framework fit in minutes on a CPU), takes the initial
weights from the PyTorch model, trains with the real `liif.training.trainer.Trainer` on each framework
for `--steps` steps, then tests both with the real evaluation loop at x2-x30. A third run,
PyTorch with 1 thread instead of 2, measures the float32 noise floor: the same code whose
only change is the summation order. `--dtype float64` trains all three in double precision
(framework.dtype), where that noise is ~1e-16 instead of ~1e-7, so what remains is any
difference in what the two backends compute. Writes `alignment.json` (the loss curves, their max
relative differences, the PSNRs per scale and the gaps) and `alignment.png` to `--out`.
Any trailing arguments are Hydra overrides (e.g. model=edsr_baseline_metasr).
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULTS = ["train.batch_size=4", "train.inp_size=24", "train.sample_q=576", "train.lr=1e-4", "train.milestones=[]",
            "train.num_workers=0", "dataset.train.repeat=100", "dataset.val=null", "device=cpu"]
# The runs compared: Jittor against PyTorch, and, as the float32 noise floor, PyTorch against
# itself with another thread count (a different summation order, nothing else changed).
RUNS = {"torch": ("torch", 2), "jittor": ("jittor", 2), "torch_1thread": ("torch", 1)}


def compose(*overrides):
    """The run config of `python run.py OVERRIDES`, typed (a liif.config.RunConfig)."""
    from liif.cli.main import compose as cli_compose, typed_config
    return typed_config(cli_compose(["run_name=align", *overrides]))


def train_and_test(framework, threads, overrides, steps, init_sd, out_dir):
    from liif.evaluation.evaluate import evaluate
    from liif.training.trainer import Trainer
    steps_per_epoch = min(steps, 100)
    cfg = compose(*DEFAULTS, f"framework={framework}", f"framework.threads={threads}", f"train.max_steps_per_epoch={steps_per_epoch}",
                  f"train.epochs={-(-steps // steps_per_epoch)}", f"output_dir={out_dir}", *overrides)
    trainer = Trainer.from_config(cfg, out_dir)
    trainer.backend.load_state_dict_numpy(trainer.net, init_sd)
    started = time.time()
    trainer.fit()
    seconds = time.time() - started
    assert len(trainer.step_losses) >= steps, "an epoch has fewer than 100 batches: raise dataset.train.repeat"
    records = evaluate(trainer.as_model(), cfg.dataset.test, cfg.eval_bsize, scales=cfg.scales)
    return trainer.step_losses[:steps], {f"x{r['scale']}": r["psnr"] for r in records}, seconds


def initial_weights(overrides):
    from liif import backends
    from liif.models import registry
    cfg = compose(*DEFAULTS, *overrides, "output_dir=unused")
    backend = backends.get("torch")
    backend.seed(cfg.seed)
    return backend.state_dict_numpy(registry.make(cfg.model.spec(), backend))


def relative_difference(a, b):
    return [abs(x - y) / abs(x) for x, y in zip(a, b)]


def plot(losses, path, dtype):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    t = losses["torch"]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    a.plot(t, label="PyTorch (2 threads)", lw=1.5)
    a.plot(losses["jittor"], label="Jittor (2 threads)", lw=1, ls="--")
    a.set_ylabel("L1 loss (normalised space)")
    a.legend()
    a.set_title(f"Same initial weights, same batches ({dtype})")
    b.semilogy(np.maximum(relative_difference(t, losses["jittor"]), 1e-17), label="Jittor vs PyTorch", lw=1)
    b.semilogy(np.maximum(relative_difference(t, losses["torch_1thread"]), 1e-17), label="PyTorch 1 vs 2 threads",
               lw=1, alpha=0.7)
    b.axhline(1e-3, color="grey", ls=":", lw=1)
    b.set_ylabel("|relative difference|")
    b.set_xlabel("step")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "alignment"))
    args, overrides = parser.parse_known_args()
    overrides = [f"framework.dtype={args.dtype}", *overrides]
    os.makedirs(args.out, exist_ok=True)
    init_sd = initial_weights(overrides)
    losses, psnr, seconds = {}, {}, {}
    for run, (framework, threads) in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            losses[run], psnr[run], seconds[run] = train_and_test(framework, threads, overrides, args.steps, init_sd, tmp)
    rel = relative_difference(losses["torch"], losses["jittor"])
    floor = relative_difference(losses["torch"], losses["torch_1thread"])
    first_over = lambda r: next((i for i, x in enumerate(r) if x > 1e-3), None)  # noqa: E731
    gaps = {k: psnr["jittor"][k] - psnr["torch"][k] for k in psnr["torch"]}
    floor_gaps = {k: psnr["torch_1thread"][k] - psnr["torch"][k] for k in psnr["torch"]}
    result = {"steps": args.steps, "dtype": args.dtype, "overrides": DEFAULTS + overrides,
              "max_rel_loss_diff": max(rel), "first_step_over_1e-3": first_over(rel),
              "noise_floor_max_rel_loss_diff": max(floor), "noise_floor_first_step_over_1e-3": first_over(floor),
              "final_loss": {k: v[-1] for k, v in losses.items()}, "psnr": psnr,
              "psnr_gap_jittor_minus_torch": gaps, "max_abs_psnr_gap": max(abs(g) for g in gaps.values()),
              "psnr_gap_torch_1thread_minus_torch": floor_gaps,
              "noise_floor_max_abs_psnr_gap": max(abs(g) for g in floor_gaps.values()),
              "train_seconds": seconds, "losses": losses}
    with open(os.path.join(args.out, "alignment.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(losses, os.path.join(args.out, "alignment.png"), args.dtype)
    print(f"{args.dtype}, steps {args.steps}: max relative loss difference Jittor vs PyTorch {max(rel):.3e} (first > 1e-3 at step "
          f"{first_over(rel)}); PyTorch 1 vs 2 threads {max(floor):.3e} (first > 1e-3 at step {first_over(floor)}); "
          f"train time {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}")
    print("| scale | PyTorch PSNR | Jittor PSNR | gap (dB) | PyTorch 1 thread | gap (dB) |\n|---|---|---|---|---|---|")
    for k in psnr["torch"]:
        print(f"| {k} | {psnr['torch'][k]:.4f} | {psnr['jittor'][k]:.4f} | {gaps[k]:+.4f} | "
              f"{psnr['torch_1thread'][k]:.4f} | {floor_gaps[k]:+.4f} |")


if __name__ == "__main__":
    main()
