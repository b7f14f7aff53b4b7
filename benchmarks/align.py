"""Alignment of the two backends: the same model, the same initial weights, the same batches.

    python benchmarks/align.py [--steps 500] [--out docs/alignment] [overrides ...]

Builds the run config (default: EDSR-baseline-LIIF on the embedded sample set, batch 4 of
24x24 patches so that 500 steps per framework fit in minutes on a CPU), takes the initial
weights from the PyTorch model, trains with the real `liif.train.Trainer` on each framework
for `--steps` steps, then tests both with the real evaluation loop at x2-x30. Writes
`alignment.json` (both loss curves, their max relative difference, both PSNRs per scale and
the gaps) and `alignment.png` (both curves and their relative difference) to `--out`.
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
            "train.num_workers=0", "dataset.val=null", "device=cpu", "framework.threads=2"]


def compose(*overrides):
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(version_base="1.3", config_dir=os.path.join(ROOT, "conf")):
        return hydra_compose("config", overrides=["run_name=align", *overrides])


def train_and_test(framework, overrides, steps, init_sd, out_dir):
    from liif.evaluate import evaluate
    from liif.train import Trainer
    steps_per_epoch = min(steps, 100)
    cfg = compose(*DEFAULTS, f"framework={framework}", f"train.max_steps_per_epoch={steps_per_epoch}",
                  f"train.epochs={-(-steps // steps_per_epoch)}", f"output_dir={out_dir}", *overrides)
    trainer = Trainer(cfg, out_dir)
    trainer.B.load_state_dict_numpy(trainer.net, init_sd)
    started = time.time()
    trainer.fit()
    seconds = time.time() - started
    records = evaluate(trainer.as_model(), cfg)
    return trainer.step_losses[:steps], {f"x{r['scale']}": r["psnr"] for r in records}, seconds


def initial_weights(overrides):
    from omegaconf import OmegaConf
    from liif import backends, registry
    cfg = compose(*DEFAULTS, *overrides, "output_dir=unused")
    B = backends.get("torch")
    B.seed(cfg.seed)
    return B.state_dict_numpy(registry.make(OmegaConf.to_container(cfg.model, resolve=True), B))


def plot(losses, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    t, j = np.array(losses["torch"]), np.array(losses["jittor"])
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    a.plot(t, label="PyTorch", lw=1.5)
    a.plot(j, label="Jittor", lw=1, ls="--")
    a.set_ylabel("L1 loss (normalised space)")
    a.legend()
    a.set_title("Same initial weights, same batches")
    b.semilogy(np.abs(t - j) / np.abs(t) + 1e-12)
    b.set_ylabel("|relative difference|")
    b.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "alignment"))
    args, overrides = parser.parse_known_args()
    os.makedirs(args.out, exist_ok=True)
    init_sd = initial_weights(overrides)
    losses, psnr, seconds = {}, {}, {}
    for framework in ("torch", "jittor"):
        with tempfile.TemporaryDirectory() as tmp:
            losses[framework], psnr[framework], seconds[framework] = train_and_test(framework, overrides, args.steps, init_sd, tmp)
    rel = [abs(a - b) / abs(a) for a, b in zip(losses["torch"], losses["jittor"])]
    gaps = {k: psnr["jittor"][k] - psnr["torch"][k] for k in psnr["torch"]}
    result = {"steps": args.steps, "overrides": DEFAULTS + overrides, "max_rel_loss_diff": max(rel),
              "final_loss": {k: v[-1] for k, v in losses.items()}, "psnr": psnr, "psnr_gap_jittor_minus_torch": gaps,
              "max_abs_psnr_gap": max(abs(g) for g in gaps.values()), "train_seconds": seconds, "losses": losses}
    with open(os.path.join(args.out, "alignment.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(losses, os.path.join(args.out, "alignment.png"))
    print(f"steps {args.steps}: max relative loss difference {max(rel):.3e}; train time torch {seconds['torch']:.0f} s, "
          f"jittor {seconds['jittor']:.0f} s")
    print("| scale | PyTorch PSNR | Jittor PSNR | gap (dB) |\n|---|---|---|---|")
    for k in psnr["torch"]:
        print(f"| {k} | {psnr['torch'][k]:.4f} | {psnr['jittor'][k]:.4f} | {gaps[k]:+.5f} |")


if __name__ == "__main__":
    main()
