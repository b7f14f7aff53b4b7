"""The speed options (issue 6, "GPU speed"): training iterations/s and DIV2K-size x4 inference time
with fp32, bf16, channels_last and torch.compile, and the PSNR cost of bf16 inference.

    python benchmarks/bench_precision.py --device cuda                          # a GPU: the full sizes
    python benchmarks/bench_precision.py --device cpu --small --checkpoint CKPT  # a CPU: smaller sizes

EDSR-baseline-LIIF on the PyTorch backend, built with `torch.manual_seed(0)` (random weights
cost the same time as trained ones), each case in a fresh model with the options of
`liif.build_model` (`framework.precision`/`infer_precision`, `channels_last`, `compile`):

1. Training: `liif.training.step.train_step` on PyTorch (forward, L1, backward, Adam) on one batch, the
   paper's 16 patches of 48x48 with 2304 queries each, scales U(1, 4) (--small: 4 of 24x24 with
   576), put on the device once (pinned memory on CUDA); `--warmup` steps (the compile case's
   first step compiles), then `--steps` timed steps. The first step's loss is shown: every case
   starts from the same weights and batch, so it shows what each option changes.
2. Inference: `Model.upscale` (encoder + decoder in chunks of 30000 queries, uint8 out) of a
   339x510 image to x4, 1356x2040 (a DIV2K validation image's size; --small: 85x128 to 340x512),
   one warm-up, then `--repeats` rounds, median; the largest uint8 difference from fp32.
3. PSNR cost of bf16 inference: the test protocol (`liif.evaluation.evaluate.predict_image`, RGB PSNR with the
   DIV2K shave, mean over images) on the embedded sample set's 3 validation photos at x2, x4 and x12,
   fp32 and bf16 against the ground truth, and bf16 against fp32, with `--checkpoint` (a trained
   model; without it the random weights, which say little). Empty case lists skip a part.

Prints Markdown tables and writes all numbers as JSON.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# the inference benchmark's model (EDSR-baseline-LIIF), chunk size and random training batch
from bench_inference import BSIZE, SPEC, training_batch  # noqa: E402
CASES = {  # name: (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "channels_last": ("fp32", True, False),
    "channels_last+bf16": ("bf16", True, False),
    "compile": ("fp32", False, True),
    "compile+channels_last+bf16": ("bf16", True, True),
}


def machine(device):
    import torch
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def build(case, device, spec=SPEC):
    import torch
    import liif
    precision, channels_last, compile = CASES[case]
    torch.manual_seed(0)
    return liif.build_model(spec, framework="torch", device=device, precision=precision,
                            channels_last=channels_last, compile=compile)


def bench_training(case, device, batch, steps, warmup, spec=SPEC, decoder="fast"):
    """`warmup` then `steps` timed training steps of a fresh model `spec` with the options of `case`;
    decoder 'reference': LIIF's original decoding formulation instead of the fast one. On CUDA also
    the peak device memory of the steps (torch.cuda.max_memory_allocated)."""
    import torch
    from bench_inference import use
    from liif.backends import torch as T
    from liif.training.step import train_step
    model = build(case, device, spec)
    if decoder != "fast":
        use(model, decoder)
    net = model.net.train()
    opt = T.adam(net, 1e-4)
    ready = T.batch_to_device(batch, next(net.parameters()), pin_memory=True)
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        losses.append(train_step(T, net, opt, ready, CASES[case][0]))  # .item(): waits for the GPU
        times.append(time.perf_counter() - t0)
    steady = times[warmup:]
    return {"it_per_s": len(steady) / sum(steady), "step_s": statistics.median(steady), "first_step_s": times[0],
            "first_loss": losses[0], "times_s": times,
            "peak_device_bytes": torch.cuda.max_memory_allocated(device) if cuda else None}


def bench_inference(case, device, image, size, repeats):
    model = build(case, device)
    times = []
    for _ in range(repeats + 1):  # the first is the warm-up (and the compile case's compilation)
        t0 = time.perf_counter()
        out = model.upscale(image, size, bsize=BSIZE)  # ends with the copy to the host: waits for the GPU
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times[1:]), "first_s": times[0], "times_s": times}, out


def psnr_cost(device, checkpoint, scales, sample_dir):
    """Mean PSNR over the images (the test protocol) of fp32 and bf16 predictions against the ground
    truth, and of the bf16 prediction against the fp32 one (how far bf16 moves the output)."""
    import liif
    from liif.evaluation import metrics
    from liif.data.layouts import test_set
    from liif.data.sample import ensure_sample_set
    from liif.evaluation.evaluate import bicubic_upsample, predict_image
    ensure_sample_set(sample_dir)
    models = {p: liif.load_model(checkpoint, framework="torch", device=device, precision=p) if checkpoint
              else build(p, device) for p in ("fp32", "bf16")}
    rows = {}
    for scale in scales:
        ds, eval_type = test_set(os.path.join(sample_dir, "valid"), None, scale), f"div2k-{scale}"
        psnr = {"fp32": [], "bf16": [], "bf16_vs_fp32": [], "bicubic": []}
        for i in range(len(ds)):
            sample = ds[i]
            sr = {p: predict_image(m, sample, BSIZE) for p, m in models.items()}
            (fp32, hr, shape), bf16 = sr["fp32"], sr["bf16"][0]
            psnr["fp32"].append(metrics.psnr(fp32, hr, eval_type))
            psnr["bf16"].append(metrics.psnr(bf16, hr, eval_type))
            psnr["bf16_vs_fp32"].append(metrics.psnr(bf16, fp32, eval_type))
            psnr["bicubic"].append(metrics.psnr(bicubic_upsample(sample["inp"], shape), hr, eval_type))
        rows[f"x{scale}"] = {k: float(np.mean(v)) for k, v in psnr.items()}
        rows[f"x{scale}"]["cost_db"] = rows[f"x{scale}"]["fp32"] - rows[f"x{scale}"]["bf16"]
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--small", action="store_true", help="CPU sizes: a batch of 4 24x24 patches, 85x128 -> x4")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps per case")
    parser.add_argument("--repeats", type=int, default=3, help="timed upscales per case (after one warm-up)")
    parser.add_argument("--train-cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--infer-cases", nargs="*", default=["fp32", "bf16", "channels_last+bf16"], choices=list(CASES))
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint for the PSNR cost of bf16")
    parser.add_argument("--psnr-scales", type=int, nargs="*", default=[2, 4, 12], help="none: skip the PSNR part")
    parser.add_argument("--sample-dir", default=os.path.join(tempfile.gettempdir(), "liif-sample"))
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "liif_bench_precision.json"))
    args = parser.parse_args()

    import torch
    from liif.backends import torch as T
    device = T.device(args.device)
    torch.set_num_threads(args.threads)
    n, side, q = (4, 24, 576) if args.small else (16, 48, 2304)
    lr_size = (85, 128) if args.small else (339, 510)
    result = {"command": "python benchmarks/bench_precision.py " + " ".join(sys.argv[1:]), "device": device,
              "machine": machine(device), "nproc": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
              "checkpoint": args.checkpoint, "loadavg_1min": {"start": os.getloadavg()[0]}}

    batch = training_batch(np.random.default_rng(0), n, side, q)
    result["training"] = {"batch": [n, 3, side, side], "queries_each": q, "cases": {}}
    for case in args.train_cases:
        r = result["training"]["cases"][case] = bench_training(case, device, batch, args.steps, args.warmup)
        print(f"train {case}: {r['it_per_s']:.3f} it/s, first step {r['first_step_s']:.1f} s", file=sys.stderr)
    result["loadavg_1min"]["after training"] = os.getloadavg()[0]

    image = np.random.default_rng(0).integers(0, 256, lr_size + (3,), dtype=np.uint8)
    size = (lr_size[0] * 4, lr_size[1] * 4)
    result["inference"] = {"input": list(lr_size), "output": list(size), "cases": {}}
    outs = {}
    for case in args.infer_cases:
        r, outs[case] = bench_inference(case, device, image, size, args.repeats)
        result["inference"]["cases"][case] = r
        print(f"upscale {case}: {r['median_s']:.3f} s", file=sys.stderr)
    for case, out in outs.items():
        result["inference"]["cases"][case]["max_uint8_diff_vs_fp32"] = int(np.abs(out.astype(int) - outs["fp32"]).max()) \
            if "fp32" in outs else None
    result["loadavg_1min"]["after inference"] = os.getloadavg()[0]

    result["psnr"] = psnr_cost(device, args.checkpoint, args.psnr_scales, args.sample_dir)
    result["loadavg_1min"]["end"] = os.getloadavg()[0]

    print(f"\nCommand: `{result['command'].strip()}`  ")
    print(f"Machine: {result['machine']} ({device}), nproc {result['nproc']}, torch {result['torch']}, "
          f"{args.threads} CPU threads; 1-minute load average "
          + ", ".join(f"{k} {v:.1f}" for k, v in result["loadavg_1min"].items()) + "\n")
    train, inf = result["training"]["cases"], result["inference"]["cases"]
    if train:
        print(f"Training, batch {n} x {side}x{side}, {q} queries each:\n")
        _table(["case", "it/s", "vs fp32", "first step (s)", "first loss"],
               [[case, f"{r['it_per_s']:.3f}", _ratio(train, case, "it_per_s"), f"{r['first_step_s']:.1f}",
                 f"{r['first_loss']:.6f}"] for case, r in train.items()])
    if inf:
        print(f"\nInference, {lr_size[0]}x{lr_size[1]} -> x4 {size[0]}x{size[1]} ({size[0] * size[1]:,} queries):\n")
        _table(["case", "median (s)", "vs fp32", "first call (s)", "max uint8 diff vs fp32"],
               [[case, f"{r['median_s']:.3f}", _ratio(inf, case, "median_s", faster_is_lower=True), f"{r['first_s']:.2f}",
                 str(r["max_uint8_diff_vs_fp32"])] for case, r in inf.items()])
    if result["psnr"]:
        print(f"\nPSNR (dB) of bf16 inference, sample set valid (3 photos), "
              f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'}:\n")
        print("| scale | fp32 | bf16 | cost (fp32 - bf16) | bf16 vs fp32 prediction | bicubic |")
        print("|---|---|---|---|---|---|")
        for scale, r in result["psnr"].items():
            print(f"| {scale} | {r['fp32']:.3f} | {r['bf16']:.3f} | {r['cost_db']:.4f} | {r['bf16_vs_fp32']:.2f} "
                  f"| {r['bicubic']:.3f} |")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nJSON: {args.json}")


def _ratio(cases, case, key, faster_is_lower=False):
    """The speed of `case` relative to fp32 ('–' without an fp32 case)."""
    if "fp32" not in cases:
        return "–"
    a, b = cases[case][key], cases["fp32"][key]
    return f"{(b / a if faster_is_lower else a / b):.2f}x"


def _table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
