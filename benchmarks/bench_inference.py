"""LIIF decoding speed and memory: the fast `decode` against the reference formulation (issue 6).

    python benchmarks/bench_inference.py [--threads 2] [--repeats 3] [--json PATH]

All on the PyTorch backend, CPU, `torch.set_num_threads(threads)`, in one process (memory:
one fresh subprocess per case), with EDSR-baseline-LIIF built with `torch.manual_seed(0)`
(random weights cost the same time as trained ones):

1. Inference: `Model.upscale` (encoder + chunked decoder, bsize 30000) of the 64x64 crop
   `skimage.data.astronaut()[80:144, 190:254]` to x4 (256x256) and x12 (768x768). The fast
   and reference paths alternate (one warm-up each, then `repeats` rounds); medians.
2. Peak memory: `ru_maxrss` of a fresh process that builds the model and upscales x4 or x30
   (1920x1920), fast and reference.
3. Training step: `liif.training.step.train_step` (forward, L1, backward, Adam) on a batch of
   16 48x48 inputs with 2304 queries each (scales U(1, 4)), fast and reference alternating.
4. Achieved FLOP/s of each against the machine's float32 matmul rate (4096x4096 @ 4096x4096).

Prints a Markdown table and writes all numbers as JSON.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SPEC = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}}}}
BSIZE = 30000


def cpu_model():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def build(threads):
    import torch
    import liif
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return liif.build_model(SPEC, framework="torch", device="cpu")


def use(model, path):
    """Select the decoding formulation: the default (fast) `decode` or the reference."""
    net = model.net
    if path == "reference":
        net.decode = net.decode_reference
    else:
        net.__dict__.pop("decode", None)


def astronaut_64():
    from skimage import data
    return np.ascontiguousarray(data.astronaut()[80:144, 190:254])


# --- FLOP counts (multiply-adds count 2; only the matmuls and convolutions are counted: ReLU,
# nearest sampling, concatenation and the ensemble weighting are O(width) per query, not
# O(width^2), and are left out) ------------------------------------------------------------

def encoder_flops(n, h, w, n_feats=64, n_resblocks=16):
    """EDSR-baseline without upsampling: a 3->C head conv, 2 C->C convs per residual block and
    one C->C conv closing the body, all 3x3 at the input resolution: 2*9*h*w*(3C + (2R+1)C^2)."""
    return 2 * 9 * n * h * w * (3 * n_feats + (2 * n_resblocks + 1) * n_feats * n_feats)


def decoder_flops(path, queries, lr_positions, in_feat=576, hidden=(256, 256, 256, 256), out=3, extra=4, corners=4):
    """The MLP per query and ensemble corner: in->h1, h1->h2, ..., h_last->out.
    reference: the first layer sees all in_feat + extra (rel_coord, rel_cell) inputs per query and corner;
    fast: per query and corner only the extra inputs (+ the bias add); the in_feat part is applied once
    per latent position (the latent table: a 3x3 conv 64 -> 256, i.e. 576 -> 256 per position)."""
    rest = sum(a * b for a, b in zip(hidden, list(hidden[1:]) + [out]))
    if path == "reference":
        per_query = (in_feat + extra) * hidden[0] + rest
        return 2 * corners * queries * per_query
    per_query = extra * hidden[0] + rest
    return 2 * corners * queries * per_query + 2 * lr_positions * in_feat * hidden[0]


def matmul_rate(threads, n=4096, repeats=5):
    """float32 FLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs), median of `repeats`."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


# --- inference ------------------------------------------------------------------------------------

def alternate(runs, repeats):
    """{name: [seconds]} of each callable in `runs`, alternating (the order reversed every other
    round, so that neither always runs first), after one warm-up round."""
    times = {name: [] for name in runs}
    names = list(runs)
    for rnd in range(repeats + 1):  # round 0 is the warm-up
        for name in (names if rnd % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runs[name]()
            if rnd:
                times[name].append(time.perf_counter() - t0)
    return times


def bench_inference(model, image, scale, repeats):
    size = (image.shape[0] * scale, image.shape[1] * scale)
    outs = {}

    def upscale(path):
        use(model, path)
        outs[path] = model.upscale(image, size, bsize=BSIZE)
    times = alternate({path: lambda path=path: upscale(path) for path in ("fast", "reference")}, repeats)
    use(model, "fast")
    diff = int(np.abs(outs["fast"].astype(int) - outs["reference"]).max())
    return times, size, diff


# --- training ---------------------------------------------------------------------------------

def training_batch(rng, n=16, side=48, q=2304):
    from liif.coords import make_coord
    coord = np.empty((n, q, 2), np.float32)
    cell = np.empty((n, q, 2), np.float32)
    for i in range(n):
        hr = round(side * rng.uniform(1, 4))
        coord[i] = make_coord((hr, hr))[rng.choice(hr * hr, q, replace=False)]
        cell[i] = 2 / hr
    return {"inp": rng.uniform(-1, 1, (n, 3, side, side)).astype(np.float32), "coord": coord, "cell": cell,
            "gt": rng.uniform(-1, 1, (n, q, 3)).astype(np.float32)}


def bench_training(model, repeats):
    from liif.backends import torch as T
    from liif.training.step import train_step
    net = model.net
    net.train()
    opt = T.adam(net, 1e-4)
    batch = training_batch(np.random.default_rng(0))

    def step(path):
        use(model, path)
        train_step(T, net, opt, batch)
    times = alternate({path: lambda path=path: step(path) for path in ("fast", "reference")}, repeats)
    use(model, "fast")
    net.eval()
    return times, batch


# --- memory (child process) --------------------------------------------------------------------

def vm_hwm_kib():
    """This process's own peak RSS (Linux VmHWM, KiB). Unlike ru_maxrss it does not start from
    the parent's RSS at fork time; None where /proc is missing."""
    try:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def memory_child(path, scale, threads):
    """Runs in a fresh process: peak RSS (ru_maxrss and VmHWM, KiB on Linux) before and after one upscale."""
    model = build(threads)
    use(model, path)
    image = astronaut_64()
    before, hwm_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, vm_hwm_kib()
    t0 = time.perf_counter()
    out = model.upscale(image, (64 * scale, 64 * scale), bsize=BSIZE)
    seconds = time.perf_counter() - t0
    after, hwm_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, vm_hwm_kib()
    print(json.dumps({"path": path, "scale": scale, "output": list(out.shape), "seconds": seconds,
                      "maxrss_before_mb": before / 1024, "maxrss_peak_mb": after / 1024,
                      "vmhwm_before_mb": hwm_before and hwm_before / 1024, "vmhwm_peak_mb": hwm_after and hwm_after / 1024}))


# glibc raises its mmap threshold as large blocks are freed, after which the decoder's 30 MB chunk
# temporaries come from a heap that fragments and grows over the first chunks; a fixed threshold
# keeps every large block an mmap, returned on free
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
FIXED_NAME = "MALLOC_MMAP_THRESHOLD_=1048576"


def bench_memory(threads, cases):
    """One fresh process per case, started before this process imports torch or builds anything:
    on Linux a child's ru_maxrss starts at its parent's RSS at fork time."""
    results = []
    for path, scale, env in cases:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", path, str(scale),
                               "--threads", str(threads)], capture_output=True, text=True, check=True,
                              env={**os.environ, **env})
        results.append({**json.loads(proc.stdout.strip().splitlines()[-1]),
                        "malloc": FIXED_NAME if env else "default"})
    return results


# --- main -------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path (after one warm-up)")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--memory-scales", type=int, nargs="+", default=[4, 30])
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "liif_bench_inference.json"))
    parser.add_argument("--memory-child", nargs=2, metavar=("PATH", "SCALE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child[0], int(args.memory_child[1]), args.threads)

    lo, hi = min(args.memory_scales), max(args.memory_scales)
    cases = [(path, scale, env) for env in ({}, FIXED_MMAP)
             for path, scale in [("fast", lo), ("fast", hi), ("reference", lo)]]
    memory = bench_memory(args.threads, cases)

    import torch
    model = build(args.threads)
    image = astronaut_64()
    load = {"start": os.getloadavg()[0]}
    result = {"command": "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]),
              "cpu": cpu_model(), "nproc": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
              "bsize": BSIZE, "input": "skimage astronaut()[80:144, 190:254], 64x64", "repeats": args.repeats}

    peak = matmul_rate(args.threads)
    result["matmul_4096_gflops"] = peak / 1e9
    enc = encoder_flops(1, 64, 64)

    rows = []
    result["inference"] = {}
    for scale in args.scales:
        times, size, diff = bench_inference(model, image, scale, args.repeats)
        q = size[0] * size[1]
        med = {p: statistics.median(t) for p, t in times.items()}
        flops = {p: enc + decoder_flops(p, q, 64 * 64) for p in med}
        entry = {"output": list(size), "queries": q, "times_s": times, "median_s": med,
                 "queries_per_s": {p: q / med[p] for p in med}, "speedup": med["reference"] / med["fast"],
                 "gflop": {p: flops[p] / 1e9 for p in med}, "gflops_per_s": {p: flops[p] / med[p] / 1e9 for p in med},
                 "max_uint8_diff_fast_vs_reference": diff}
        load[f"after x{scale}"] = os.getloadavg()[0]
        result["inference"][f"x{scale}"] = entry
        rows.append((f"inference x{scale} ({size[0]}x{size[1]}, {q:,} queries)", entry))
        # the latent table is built once per image, so the fast path's time does not depend on its own cache
        print(f"x{scale}: fast {med['fast']:.3f} s, reference {med['reference']:.3f} s, "
              f"speedup {entry['speedup']:.2f}x, max |diff| {diff} (uint8)", file=sys.stderr)

    times, batch = bench_training(model, args.repeats)
    med = {p: statistics.median(t) for p, t in times.items()}
    n, _, h, w = batch["inp"].shape
    q = batch["coord"].shape[0] * batch["coord"].shape[1]
    # training: forward + backward ~ 3x the forward FLOPs (grads w.r.t. activations and weights)
    flops = {p: 3 * (encoder_flops(n, h, w) + decoder_flops(p, q, n * h * w)) for p in med}
    entry = {"batch": [n, 3, h, w], "queries": q, "times_s": times, "median_s": med,
             "steps_per_s": {p: 1 / med[p] for p in med}, "speedup": med["reference"] / med["fast"],
             "gflop": {p: flops[p] / 1e9 for p in med}, "gflops_per_s": {p: flops[p] / med[p] / 1e9 for p in med}}
    load["after training"] = os.getloadavg()[0]
    # this process keeps 2 threads busy: a 1-minute load average well above `threads` means other
    # processes shared the cores, and OpenMP threads then wait on each other (times inflate several-fold)
    result["loadavg_1min"] = load
    result["training"] = entry
    rows.append((f"training step (batch {n}, {h}x{w}, {q // n} queries each)", entry))
    print(f"training: fast {med['fast']:.3f} s, reference {med['reference']:.3f} s, speedup {entry['speedup']:.2f}x",
          file=sys.stderr)

    result["memory"] = memory

    print(f"\nCommand: `{result['command'].strip()}`  ")
    print(f"Machine: {result['cpu']}, nproc {result['nproc']}, torch {result['torch']}, {args.threads} threads; "
          f"float32 matmul 4096x4096: {result['matmul_4096_gflops']:.1f} GFLOP/s; 1-minute load average "
          + ", ".join(f"{k} {v:.1f}" for k, v in load.items()) + "\n")
    print("| case | reference | fast | speedup | reference GFLOP/s (% of matmul) | fast GFLOP/s (% of matmul) |")
    print("|---|---|---|---|---|---|")
    for name, e in rows:
        unit = "queries/s" if "queries_per_s" in e else "steps/s"
        rate = e.get("queries_per_s") or e["steps_per_s"]
        cells = [f"{e['median_s'][p]:.3f} s ({rate[p]:,.{0 if unit == 'queries/s' else 2}f} {unit})" for p in ("reference", "fast")]
        perf = [f"{e['gflops_per_s'][p]:.1f} ({100 * e['gflops_per_s'][p] / result['matmul_4096_gflops']:.0f}%)"
                for p in ("reference", "fast")]
        print(f"| {name} | {cells[0]} | {cells[1]} | **{e['speedup']:.2f}x** | {perf[0]} | {perf[1]} |")
    print("\n| scale | path | malloc | output | ru_maxrss before upscale | ru_maxrss peak | upscale time |")
    print("|---|---|---|---|---|---|---|")
    for m in result["memory"]:
        print(f"| x{m['scale']} | {m['path']} | {m['malloc']} | {m['output'][0]}x{m['output'][1]} | "
              f"{m['maxrss_before_mb']:.0f} MB | {m['maxrss_peak_mb']:.0f} MB | {m['seconds']:.1f} s |")
    peaks = {(m["path"], m["scale"], m["malloc"]): m["maxrss_peak_mb"] for m in result["memory"]}
    result["memory_ratio_fast"] = {a: peaks[("fast", hi, a)] / peaks[("fast", lo, a)] for a in ("default", FIXED_NAME)}
    print(f"\nFast path, peak RSS x{hi} / x{lo} (bsize {BSIZE}): "
          + ", ".join(f"{r:.2f} ({a} malloc)" for a, r in result["memory_ratio_fast"].items()))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
