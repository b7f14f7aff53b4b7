"""Tiled inference (issue 13): peak memory and time against input size, untiled vs tiled.

    python benchmarks/bench_tiled.py [--budget 200MB] [--sizes 192 384 768] [--original-sizes 192 384]
                                     [--rdn-budget 1GB] [--rdn-sizes 96 192] [--threads 2]

PyTorch, CPU. Each case is a fresh process (one model, one `Model.upscale` at x2 of a random
h x h uint8 image; `torch.manual_seed(0)` weights: random weights cost the same as trained ones):

- untiled: `max_memory="1TB"`, i.e. one tile, the whole-input computation;
- tiled: `max_memory=BUDGET`;
- original (EDSR-baseline-LIIF, the smaller sizes): untiled through the original's decoding
  formulation (`decode_reference`, which unfolds the whole feature map for every chunk of
  30,000 queries), for reference: the peak the original code's demo reaches.

Peak: the process's VmHWM after the upscale minus its VmRSS just before it (Python, torch, the
model and the input are not the upscale's), after a warm-up upscale of a 32x32 crop. Time: the
upscale's wall time (the median of 3 upscales for inputs up to 384x384, one above). Then the hard
limit: the largest input, untiled and tiled, each with its address space limited (RLIMIT_AS, what `ulimit -v` sets) to its size before the upscale plus the
budget plus the output (and `MALLOC_ARENA_MAX=1`: see `run_case`): the untiled run must fail, the
tiled one succeed (`--hard-limit-only`: just these); EDSR-baseline-LIIF only (RDN's smallest tile,
its 131-pixel halo included, is larger than the inputs this CPU runs in minutes).
EDSR-baseline-LIIF and RDN-LIIF are the paper's (hidden 256 x 4; RDN config B).
Prints a Markdown table; all numbers as JSON (--json).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MLP = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}}
SPECS = {
    "edsr-baseline-liif": {"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}, "imnet_spec": MLP}},
    "rdn-liif": {"name": "liif", "args": {
        "encoder_spec": {"name": "rdn", "args": {"G0": 64, "RDNconfig": "B", "no_upsampling": True}}, "imnet_spec": MLP}},
    "edsr-baseline-lte": {"name": "lte", "args": {  # LTE (issue 20): its footprint's honesty, by hand (below)
        "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256]}}, "hidden_dim": 256}},
}
UNTILED = "1TB"
SCALE = 2


def proc_status(key):
    """A /proc/self/status value in bytes (VmRSS, VmHWM, VmSize)."""
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))


def original_demo(net, image, out_size, bsize=30000):
    """The original demo.py's computation: the whole input encoded, the original's decoding
    formulation on chunks of `bsize` queries (its batched_predict), a float prediction of the whole
    output, then the image."""
    import torch
    from liif.coords import make_coord
    from liif.value_range import from_model_range, to_model_range
    inp = to_model_range(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    h, w = out_size
    coord = torch.from_numpy(make_coord((h, w)).reshape(1, -1, 2))
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / h
    cell[..., 1] *= 2 / w
    with torch.no_grad():
        net.eval()
        latent = net.encode(inp[None])
        preds = [net.decode_reference(latent, coord[:, i:i + bsize], cell[:, i:i + bsize]) for i in range(0, h * w, bsize)]
        pred = torch.cat(preds, dim=1)[0]
    return from_model_range(pred).clamp(0, 1).view(h, w, 3).mul(255).round().byte().numpy()


def child(model_name, size, budget, threads, rlimit, path="fast", repeats=1):
    """Runs in a fresh process; prints one JSON line."""
    import torch
    import liif
    from liif.sizes import parse_bytes
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = liif.build_model(SPECS[model_name], framework="torch", device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out_size = (SCALE * size, SCALE * size)
    if path == "reference":  # the original demo, as it computes: no Encoding (so glibc's defaults, too)
        upscale = lambda img, out, **_: original_demo(model.net, img, out)  # noqa: E731
        tiles = 1
    else:
        upscale = model.upscale
        tiles = model.encode(image, max_memory=budget).plan(1 / SCALE).n_tiles
    upscale(image[:32, :32], (64, 64), max_memory=budget)  # warm-up: first-call allocations
    record = {"model": model_name, "size": size, "budget": budget, "tiles": tiles, "rlimit": rlimit, "path": path}
    before = proc_status("VmRSS")
    if rlimit:
        limit = proc_status("VmSize") + parse_bytes(rlimit) + 3 * out_size[0] * out_size[1]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        record["rlimit_bytes"] = limit
    try:
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            upscale(image, out_size, max_memory=budget)
            seconds.append(time.perf_counter() - t0)
        record.update(ok=True, seconds=float(np.median(seconds)), all_seconds=seconds)
    except (MemoryError, RuntimeError) as e:  # torch: "DefaultCPUAllocator: can't allocate memory"
        record.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    record["peak_mb"] = (proc_status("VmHWM") - before) / 2**20
    print(json.dumps(record), flush=True)


def run_case(model_name, size, budget, threads, rlimit=None, path="fast"):
    repeats = 3 if size <= 384 and not rlimit else 1  # the median of 3 where a run takes seconds
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model_name, str(size), budget, "--threads", str(threads),
           "--path", path, "--repeats", str(repeats)]
    if rlimit:
        cmd += ["--rlimit", rlimit]
    # glibc's default malloc, what a user gets. Under an address-space limit, one malloc arena: each
    # further arena (a thread's first allocation) reserves 64 MB of address space, which RLIMIT_AS
    # counts though it is never touched
    env = {**os.environ, "MALLOC_ARENA_MAX": "1"} if rlimit else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"model": model_name, "size": size, "budget": budget, "rlimit": rlimit, "ok": False,
                "error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:160] if proc.stderr.strip() else ''}"}
    return json.loads(lines[-1])


def table(rows, budget_mb, originals):
    out = ["| input | output | original's peak | untiled peak | tiled peak (tiles) | tiled peak / budget | untiled time | "
           "tiled time | tiled / untiled time |", "|---|---|---|---|---|---|---|---|---|"]
    for u, t in rows:
        s = u["size"]
        o = originals.get(s)
        original = "" if o is None else f"{o['peak_mb']:.0f} MB" if o.get("ok") else "failed"
        out.append(f"| {s}x{s} | {SCALE * s}x{SCALE * s} | {original} | {u['peak_mb']:.0f} MB | {t['peak_mb']:.0f} MB "
                   f"({t['tiles']}) | {t['peak_mb'] / budget_mb:.2f} | {u['seconds']:.1f} s | {t['seconds']:.1f} s | "
                   f"{t['seconds'] / u['seconds']:.2f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="200MB")
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 384, 768])
    parser.add_argument("--original-sizes", type=int, nargs="*", default=[192, 384])
    parser.add_argument("--rdn-budget", default="1GB")
    parser.add_argument("--rdn-sizes", type=int, nargs="+", default=[96, 192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "liif_bench_tiled.json"))
    parser.add_argument("--hard-limit-only", action="store_true", help="only the address-space-limited runs")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SIZE", "BUDGET"), help=argparse.SUPPRESS)
    parser.add_argument("--rlimit", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), args.child[2], args.threads, args.rlimit, args.path, args.repeats)

    from liif.sizes import parse_bytes
    result = {"command": "python benchmarks/bench_tiled.py " + " ".join(sys.argv[1:]), "load_start": os.getloadavg()[0],
              "models": {}}
    started = time.time()
    for model_name, budget, sizes in (("edsr-baseline-liif", args.budget, args.sizes),
                                      ("rdn-liif", args.rdn_budget, args.rdn_sizes)):
        rows, originals, edsr = [], {}, model_name == "edsr-baseline-liif"
        for size in ([] if args.hard_limit_only else sizes):
            rows.append((run_case(model_name, size, UNTILED, args.threads), run_case(model_name, size, budget, args.threads)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if edsr and size in args.original_sizes:
                originals[size] = run_case(model_name, size, UNTILED, args.threads, path="reference")
                print(json.dumps(originals[size]), file=sys.stderr, flush=True)
        hard = [run_case(model_name, max(sizes), b, args.threads, rlimit=budget) for b in (UNTILED, budget)] if edsr else []
        print(json.dumps(hard), file=sys.stderr, flush=True)
        result["models"][model_name] = {"budget": budget, "rows": rows, "originals": originals, "hard_limit": hard}
        budget_mb = parse_bytes(budget) / 2**20
        print(f"\n### {model_name}, x{SCALE}, budget {budget}\n")
        if rows and all(u.get("ok") and t.get("ok") for u, t in rows):
            print(table(rows, budget_mb, originals))
        else:
            print(json.dumps(rows, indent=1))
        for name, h in zip(("untiled", "tiled"), hard):
            verdict = "succeeded" if h.get("ok") else f"failed ({h.get('error')})"
            print(f"\nhard limit, {max(sizes)}x{max(sizes)} {name}, address space = size before + {budget} + output: {verdict}")
    result["load_end"] = os.getloadavg()[0]
    result["minutes"] = (time.time() - started) / 60
    print(f"\nload average {result['load_start']:.1f} -> {result['load_end']:.1f}; {result['minutes']:.1f} min")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
