"""`python run.py task=serve checkpoint=CKPT` (or checkpoint=[A.pth,B.pth], or dir=multirun/<date>/<time>).

Loads the checkpoints and images named on the command line (input=IMG, else the sample set's
validation photos), prints the viewer's local URL and serves it until Ctrl-C. Options (host, port,
downscale, limits) are in conf/task/serve.yaml. Needs the `serve` extra (Starlette, uvicorn).
"""
import logging
import socket

from liif.errors import LiifError

log = logging.getLogger(__name__)


def checkpoint_paths(checkpoint, sweep_dir):
    from liif.serve.sources import sweep_checkpoints

    if isinstance(checkpoint, (list, tuple)):
        paths = [str(p) for p in checkpoint]
    else:
        paths = [str(checkpoint)] if checkpoint else []
    if sweep_dir:
        paths += sweep_checkpoints(str(sweep_dir))
    return paths


def listen(host, port):
    """A bound, listening socket, or the usual one-line error (port taken, bad host)."""
    try:
        sock = socket.create_server((host, port))
    except (OSError, OverflowError) as e:
        raise LiifError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e}); "
                        f"choose another with task.port=N (0: any free port)") from None
    return sock


def main(cfg, choices=None):
    """`python run.py task=serve ...`: `cfg` is a liif.config.RunConfig (with a checkpoint or a sweep
    folder, and the viewer's settings in `task`: RunConfig and TaskConfig check them)."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise LiifError('task=serve needs the serve extra: pip install -e ".[serve]"') from None
    from liif.inference.api import infer_options
    from liif.serve.app import Viewer, create_app
    from liif.serve.sources import load_checkpoints, load_pictures

    t = cfg.task
    paths = checkpoint_paths(cfg.checkpoint, cfg.dir)
    factor = t.downscale
    pictures = load_pictures(cfg.input, cfg.paths.sample_dir, factor)
    checkpoints = load_checkpoints(paths, cfg.framework.name, cfg.device, infer_options(cfg.framework))
    viewer = Viewer(checkpoints, pictures, factor=factor, max_viewport=t.max_viewport,
                    max_upload_bytes=int(t.max_upload_mb * (1 << 20)), max_upload_pixels=t.max_upload_pixels,
                    max_renders=t.max_renders, coarse_factor=t.coarse_factor, tile_rows=t.tile_rows,
                    bsize=cfg.eval_bsize, cache_bytes=int(t.cache_mb * (1 << 20)), max_memory=cfg.infer.max_memory,
                    tile=cfg.infer.tile)
    sock = listen(t.host, t.port)
    host, port = sock.getsockname()[:2]
    local = host in ("127.0.0.1", "localhost", "::1")
    app = create_app(viewer, allowed_hosts=("127.0.0.1", "localhost", "[::1]") if local else ("*",))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    for c in checkpoints:
        log.info("pane %s: %s (%s, run %s, epoch %s) from %s", c.id, c.label["model"], c.label["framework"],
                 c.label["run"], c.label["epoch"], c.path)
    print(f"LIIF viewer: {url}  ({len(checkpoints)} checkpoint(s), {len(pictures)} image(s); Ctrl-C to stop)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then re-raises it: that is the normal end
        pass
    log.info("viewer stopped")
    return url
