"""The zoom viewer's latency (issue 15): EDSR-baseline-LIIF on the CPU, through the real server.

    python benchmarks/bench_serve.py [--threads 2] [--repeats 3] [--json PATH]

The viewer (liif/serve) runs under uvicorn on a local port in this process, with the model of
bench_inference (EDSR-baseline-LIIF, random weights: the same cost as trained ones) and the
sample set's 240x360 validation photo `coffee`; requests go over HTTP (httpx, streamed), as the
page sends them. The view is x4 (a 960x1440 grid) and a 512x512 viewport inside the image:
262,144 queries. Medians of `repeats` rounds, after one warm-up:

1. first render, features cached: from the request to the first line (the coarse preview,
   x1 on a 128x128 grid) received;
2. full render, features cached: from the request to the last line (preview, eight 64-row bands,
   PSNR-free), against `Model.query` on the same 262,144 queries (which also runs the encoder:
   its decoding part alone, `Model.query` minus `encode`, is given too);
3. first render of a new image: the features of the image dropped from the cache first, so the
   request also runs the encoder (the viewer's first view of an image or upload).
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_inference import build, cpu_model  # noqa: E402

SCALE, TOP, LEFT, SIZE = 4.0, 200, 400, 512


def start_server(viewer):
    import uvicorn

    from liif.serve.app import create_app
    sock = socket.create_server(("127.0.0.1", 0))
    app = create_app(viewer)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.token


async def timed_render(url, token, view):
    """(seconds to the first line, seconds to the last line) of one render request."""
    import httpx
    params = {"session": "bench", "view": view, "pane": "m0", "image": "i0", "scale": SCALE, "top": TOP,
              "left": LEFT, "height": SIZE, "width": SIZE}
    from liif.serve.origin import TOKEN_HEADER
    async with httpx.AsyncClient(timeout=600, headers={TOKEN_HEADER: token}) as client:  # the token the page sends
        t0 = time.perf_counter()
        first = None
        async with client.stream("GET", url + "/api/render", params=params) as r:
            assert r.status_code == 200, await r.aread()
            async for line in r.aiter_lines():
                if first is None:
                    first = time.perf_counter() - t0
                last = json.loads(line)
        assert last["type"] == "done" and last["queries"] == SIZE * SIZE, last
        return first, time.perf_counter() - t0


def model_query(model, image):
    """Seconds of Model.query on the viewport's queries, and of its encoder part alone."""
    from liif.serve import geometry
    from liif.value_range import image_to_model_range
    region = geometry.visible(geometry.grid(image.shape[:2], SCALE), TOP, LEFT, SIZE, SIZE)
    coord, cell = geometry.queries(region)
    inp = np.ascontiguousarray(image_to_model_range(image).transpose(2, 0, 1)[None])  # Model.query's (1, 3, h, w)
    t0 = time.perf_counter()
    model.query(inp, coord, cell, bsize=30000)
    total = time.perf_counter() - t0
    import torch
    t0 = time.perf_counter()
    with torch.no_grad():
        model.net.encode(torch.from_numpy(inp))
    return total, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from liif.data.image_folder import read_image
    from liif.data.sample import ensure_sample_set
    from liif.serve import sources
    from liif.serve.app import Viewer

    model = build(args.threads)
    image = read_image(os.path.join(ensure_sample_set(os.path.join(tempfile.mkdtemp(), "sample")), "valid", "coffee.png"))
    ckpt = sources.Checkpoint("m0", "bench", {"model": "liif", "framework": "torch", "run": "bench", "epoch": 0}, model)
    viewer = Viewer([ckpt], [sources.make_picture("i0", "coffee.png", image)])
    server, url, token = start_server(viewer)

    view = [0]

    def render():
        view[0] += 1
        return asyncio.run(timed_render(url, token, view[0]))

    render()  # warm-up (also fills the feature cache)
    model_query(model, image)
    cached_first, cached_full, new_first, query, encoder = [], [], [], [], []
    for _ in range(args.repeats):
        first, full = render()
        cached_first.append(first)
        cached_full.append(full)
        total, enc = model_query(model, image)
        query.append(total)
        encoder.append(enc)
        viewer.cache.drop(lambda key: True)  # the image is new again
        new_first.append(render()[0])
        render()  # the features are cached again for the next round
    server.should_exit = True

    med = statistics.median
    decoding = med(q - e for q, e in zip(query, encoder))
    result = {"threads": args.threads, "repeats": args.repeats, "cpu": cpu_model(), "image": list(image.shape[:2]),
              "scale": SCALE, "viewport": [SIZE, SIZE], "queries": SIZE * SIZE,
              "first_render_cached_s": med(cached_first), "full_render_cached_s": med(cached_full),
              "model_query_s": med(query), "model_query_encoder_s": med(encoder), "model_query_decoding_s": decoding,
              "full_over_model_query": med(cached_full) / med(query), "full_over_decoding": med(cached_full) / decoding,
              "first_render_new_image_s": med(new_first), "raw": {"cached_first": cached_first, "cached_full": cached_full,
              "new_first": new_first, "model_query": query, "encoder": encoder}}
    print(f"| what ({SIZE}x{SIZE} viewport, x{SCALE:g}, {SIZE * SIZE:,} queries) | seconds |")
    print("|---|---|")
    print(f"| first (coarse) render, features cached | {result['first_render_cached_s']:.3f} |")
    print(f"| full render, features cached | {result['full_render_cached_s']:.3f} |")
    print(f"| Model.query, same queries (encoder + decoding) | {result['model_query_s']:.3f} |")
    print(f"| Model.query's decoding alone (minus its encoder, {result['model_query_encoder_s']:.3f} s) | {decoding:.3f} |")
    print(f"| first render of a new image (encoder + coarse) | {result['first_render_new_image_s']:.3f} |")
    print(f"full render / Model.query: {result['full_over_model_query']:.3f}; / its decoding alone: {result['full_over_decoding']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
