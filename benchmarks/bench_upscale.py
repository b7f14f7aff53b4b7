"""`Model.upscale` time of one model, through the public API only, so that two checkouts can be
compared with the same script (the decoder-contract change of issue 20 against the commit before it):

    PYTHONPATH=<checkout> python benchmarks/bench_upscale.py [--model edsr_baseline_liif] [--scales 4 12]
        [--repeats 3] [--threads 2]

PyTorch on the CPU, the preset built with `torch.manual_seed(0)` weights (random weights cost the
same time as trained ones), the 64x64 crop `skimage.data.astronaut()[80:144, 190:254]` upscaled to
each scale (one warm-up, then `repeats` timed calls). Prints one JSON line: the checkout's `liif`
path and, per scale, the median and minimum seconds. docs/benchmarks.md has the command and figures.
"""
import argparse
import json
import statistics
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="edsr_baseline_liif")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from skimage import data

    import liif
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = liif.build_model(liif.models.presets.spec(args.model), framework="torch", device="cpu")
    image = np.ascontiguousarray(data.astronaut()[80:144, 190:254])
    result = {"liif": liif.__file__, "model": args.model, "threads": args.threads}
    for scale in args.scales:
        size = (64 * scale, 64 * scale)
        model.upscale(image, size, progress=False)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.upscale(image, size, progress=False)
            times.append(time.perf_counter() - start)
        result[f"x{scale}"] = {"median_s": statistics.median(times), "min_s": min(times)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
