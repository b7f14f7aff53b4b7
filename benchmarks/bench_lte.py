"""LTE decoding speed: the fast `decode` against the authors' formulation, and the cost per output
pixel of LTE beside LIIF's (issue 20).

    python benchmarks/bench_lte.py [--threads 2] [--repeats 3] [--json PATH]

All on the PyTorch backend, CPU, `torch.set_num_threads(threads)`, in one process, with
EDSR-baseline-LTE and EDSR-baseline-LIIF (the presets) built with `torch.manual_seed(0)` (random
weights cost the same time as trained ones):

1. LTE, fast against reference: `Model.upscale` (encoder + chunked decoder, bsize 30000) of the
   64x64 crop `skimage.data.astronaut()[80:144, 190:254]` to x4 and x12, and one training step
   (`train_step`: forward, L1, backward, Adam) on a batch of 16 48x48 inputs with 2304 queries
   each; the two paths alternate (one warm-up round, then `repeats` rounds); medians.
2. Cost per output pixel, LIIF's fast path against LTE's: multiply-adds per output pixel
   (counted below) and the measured time per output pixel of the x12 upscale (where the encoder's
   share is small), both models alternating in the same rounds.

Prints Markdown tables and writes all numbers as JSON.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_inference import BSIZE, alternate, astronaut_64, cpu_model, training_batch  # noqa: E402


def build(name, threads):
    import torch
    import liif
    from liif.models import presets
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return liif.build_model(presets.spec(name), framework="torch", device="cpu")


def use(model, path):
    """Select the decoding formulation: the default (fast) `decode` or the reference."""
    if path == "reference":
        model.net.decode = model.net.decode_reference
    else:
        model.net.__dict__.pop("decode", None)


# --- multiply-adds per output pixel (matmuls only: lookups, cos/sin and the ensemble weighting
# are O(width) per query and corner, not O(width^2)) ---------------------------------------------

def liif_macs_per_pixel(hidden=(256, 256, 256, 256), out=3, corners=4):
    """LIIF's fast path per query: for each corner, the 4 coordinate inputs into the first layer and
    the hidden layers after it (its 576 feature inputs are applied once per latent pixel)."""
    rest = sum(a * b for a, b in zip(hidden, list(hidden[1:]) + [out]))
    return corners * (4 * hidden[0] + rest)


def lte_macs_per_pixel(d=256, hidden=(256, 256, 256), out=3, corners=4):
    """LTE per query: the phase (2 -> D/2, once), and per corner the frequency projection (D/2 x 2),
    the amplitude product (D) and the whole MLP D -> 256 -> 256 -> 256 -> 3: its first layer
    reads a query-dependent input, so nothing of it is precomputed."""
    mlp = sum(a * b for a, b in zip((d,) + tuple(hidden), tuple(hidden) + (out,)))
    return 2 * (d // 2) + corners * (2 * (d // 2) + d + mlp)


def encoder_macs_per_lr_pixel(n_feats=64, n_resblocks=16):
    return 9 * (3 * n_feats + (2 * n_resblocks + 1) * n_feats * n_feats)


def lte_maps_macs_per_lr_pixel(n_feats=64, d=256):
    return 2 * 9 * n_feats * d  # the amplitude and frequency 3x3 convolutions


def liif_table_macs_per_lr_pixel(n_feats=64, width=256):
    return 9 * n_feats * width  # the latent table: the first layer's feature part, a 3x3 convolution


# --- timing ---------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per case (after one warm-up)")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "liif_bench_lte.json"))
    args = parser.parse_args()

    import torch
    from liif.backends import torch as T
    from liif.training.step import train_step
    lte, liif_model = build("edsr_baseline_lte", args.threads), build("edsr_baseline_liif", args.threads)
    image = astronaut_64()
    load = {"start": os.getloadavg()[0]}
    result = {"command": "python benchmarks/bench_lte.py " + " ".join(sys.argv[1:]), "cpu": cpu_model(),
              "nproc": os.cpu_count(), "threads": args.threads, "torch": torch.__version__, "bsize": BSIZE,
              "input": "skimage astronaut()[80:144, 190:254], 64x64", "repeats": args.repeats}

    def upscale(model, path, size):
        def run():
            use(model, path)
            out = model.upscale(image, size, bsize=BSIZE)
            use(model, "fast")
            return out
        return run

    rows, result["lte"] = [], {}
    for scale in args.scales:
        size = (64 * scale, 64 * scale)
        fast, ref = upscale(lte, "fast", size)(), upscale(lte, "reference", size)()
        diff = int(np.abs(fast.astype(int) - ref).max())
        times = alternate({"fast": upscale(lte, "fast", size), "reference": upscale(lte, "reference", size)}, args.repeats)
        med = {p: statistics.median(t) for p, t in times.items()}
        q = size[0] * size[1]
        entry = {"output": list(size), "queries": q, "times_s": times, "median_s": med,
                 "speedup": med["reference"] / med["fast"], "max_uint8_diff_fast_vs_reference": diff}
        result["lte"][f"x{scale}"] = entry
        load[f"after x{scale}"] = os.getloadavg()[0]
        rows.append((f"LTE inference x{scale} ({size[0]}x{size[1]}, {q:,} queries)", entry))
        print(f"x{scale}: fast {med['fast']:.3f} s, reference {med['reference']:.3f} s, speedup {entry['speedup']:.2f}x, "
              f"max |diff| {diff} (uint8)", file=sys.stderr)

    net = lte.net
    net.train()
    opt = T.adam(net, 1e-4)
    batch = training_batch(np.random.default_rng(0))

    def step(path):
        def run():
            use(lte, path)
            train_step(T, net, opt, batch)
            use(lte, "fast")
        return run
    times = alternate({"fast": step("fast"), "reference": step("reference")}, args.repeats)
    net.eval()
    med = {p: statistics.median(t) for p, t in times.items()}
    entry = {"batch": [16, 3, 48, 48], "queries": 16 * 2304, "times_s": times, "median_s": med,
             "speedup": med["reference"] / med["fast"]}
    result["lte"]["training"] = entry
    load["after training"] = os.getloadavg()[0]
    rows.append(("LTE training step (batch 16, 48x48, 2304 queries each)", entry))
    print(f"training: fast {med['fast']:.3f} s, reference {med['reference']:.3f} s, speedup {entry['speedup']:.2f}x",
          file=sys.stderr)

    # cost per output pixel: both fast paths at the largest scale, alternating
    scale = max(args.scales)
    size = (64 * scale, 64 * scale)
    times = alternate({"liif": upscale(liif_model, "fast", size), "lte": upscale(lte, "fast", size)}, args.repeats)
    med = {m: statistics.median(t) for m, t in times.items()}
    pixels = size[0] * size[1]
    per_lr = encoder_macs_per_lr_pixel()
    macs = {"liif": liif_macs_per_pixel() + (per_lr + liif_table_macs_per_lr_pixel()) / scale ** 2,
            "lte": lte_macs_per_pixel() + (per_lr + lte_maps_macs_per_lr_pixel()) / scale ** 2}
    result["per_output_pixel"] = {
        "scale": scale, "output": list(size), "times_s": times, "median_s": med,
        "us_per_pixel": {m: 1e6 * med[m] / pixels for m in med},
        "macs_per_pixel": macs, "decoder_macs_per_pixel": {"liif": liif_macs_per_pixel(), "lte": lte_macs_per_pixel()},
        "lte_over_liif_time": med["lte"] / med["liif"], "lte_over_liif_macs": macs["lte"] / macs["liif"]}
    load["after cost per pixel"] = os.getloadavg()[0]
    result["loadavg_1min"] = load

    print(f"\nCommand: `{result['command'].strip()}`  ")
    print(f"Machine: {result['cpu']}, nproc {result['nproc']}, torch {result['torch']}, {args.threads} threads; "
          "1-minute load average " + ", ".join(f"{k} {v:.1f}" for k, v in load.items()) + "\n")
    print("| case | reference (the authors' formulation) | fast | speedup |")
    print("|---|---|---|---|")
    for name, e in rows:
        print(f"| {name} | {e['median_s']['reference']:.3f} s | {e['median_s']['fast']:.3f} s | **{e['speedup']:.2f}x** |")
    c = result["per_output_pixel"]
    print(f"\nCost per output pixel at x{scale} ({size[0]}x{size[1]} from 64x64), fast paths:\n")
    print("| model | decoder multiply-adds per pixel | with the encoder's share | time per pixel |")
    print("|---|---|---|---|")
    for m, label in (("liif", "EDSR-baseline-LIIF"), ("lte", "EDSR-baseline-LTE")):
        print(f"| {label} | {c['decoder_macs_per_pixel'][m] / 1e3:.0f} k | {c['macs_per_pixel'][m] / 1e3:.0f} k | "
              f"{c['us_per_pixel'][m]:.2f} us |")
    print(f"\nLTE / LIIF: {c['lte_over_liif_macs']:.2f}x the multiply-adds, {c['lte_over_liif_time']:.2f}x the time")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
