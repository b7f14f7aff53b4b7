"""Training iterations/s and evaluation images/s of the real trainer and test loop.

    python benchmarks/bench_train_eval.py [--framework torch] [--threads 2] [--steps 10]

Training: EDSR-baseline-LIIF with the paper's batch (16 patches of 48x48, 2304 sampled
pixels, scales U(1,4)) on the embedded sample set, through `liif.training.trainer.Trainer` (data
pipeline included), after 2 warm-up steps. Evaluation: the sample set's 3 validation
photos (240x240 and 240x360) at x2 and x4 through `liif.evaluation.evaluate.evaluate_set`
(PSNR, SSIM and the bicubic floor included; queries/s counts output pixels decoded). Prints a Markdown table and writes JSON.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def compose(*overrides):
    """The run config of `python run.py OVERRIDES`, typed (a liif.config.RunConfig)."""
    from liif.cli.main import compose as cli_compose, typed_config
    return typed_config(cli_compose(["run_name=bench", *overrides]))


def cpu_model():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from liif.data.layouts import test_set
    from liif.evaluation.evaluate import evaluate_set
    from liif.training.trainer import Trainer

    out = tempfile.mkdtemp(prefix="liif-bench-")
    cfg = compose(f"framework={args.framework}", f"framework.threads={args.threads}", f"device={args.device}",
                  "train=paper", "train.num_workers=0", f"train.max_steps_per_epoch={args.steps + 2}", "train.epochs=1",
                  "dataset.val=null", f"output_dir={out}")
    trainer = Trainer.from_config(cfg, out)
    import liif.training.trainer
    step = liif.training.trainer.train_step
    times = []

    def timed_step(*a):
        t0 = time.perf_counter()
        loss = step(*a)
        times.append(time.perf_counter() - t0)
        return loss

    liif.training.trainer.train_step = timed_step  # what the trainer calls for each step
    epoch_start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - epoch_start
    steady = times[2:]
    train_its = len(steady) / sum(steady)
    # the whole epoch (data pipeline, warm-up steps and the checkpoint write included)
    train_its_with_data = len(times) / wall

    model = trainer.as_model()
    evals, queries = {}, {}
    for scale in (2, 4):
        ds = test_set(os.path.join(cfg.paths.sample_dir, "valid"), None, scale)
        n_queries = sum(ds[i]["coord"].shape[0] for i in range(len(ds)))
        evaluate_set(model, ds, f"div2k-{scale}", cfg.eval_bsize)  # warm-up
        t0 = time.perf_counter()
        evaluate_set(model, ds, f"div2k-{scale}", cfg.eval_bsize)
        seconds = time.perf_counter() - t0
        evals[scale], queries[scale] = len(ds) / seconds, n_queries / seconds

    result = {"framework": args.framework, "device": args.device, "threads": args.threads, "cpu": cpu_model(),
              "nproc": os.cpu_count(), "train_steps_timed": len(steady), "train_it_per_s": train_its,
              "train_it_per_s_incl_data": train_its_with_data,
              "eval_images_per_s": {f"x{k}": v for k, v in evals.items()},
              "eval_queries_per_s": {f"x{k}": v for k, v in queries.items()}}
    print("| framework | device | threads | train it/s (step) | train it/s (whole epoch) | eval img/s x2 | eval img/s x4 "
          "| eval queries/s x2 | eval queries/s x4 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.framework} | {args.device} | {args.threads} | {train_its:.3f} | {train_its_with_data:.3f} | "
          f"{evals[2]:.3f} | {evals[4]:.3f} | {queries[2]:,.0f} | {queries[4]:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
