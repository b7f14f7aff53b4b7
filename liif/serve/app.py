"""The viewer's web server: the page, the panes and images, uploads, and progressive renders.

    GET  /                 the page (static/index.html, viewer.js, viewer.css; no build step, no CDN)
    GET  /api/info         images, panes (bicubic, one per checkpoint, ground truth) and limits
    GET  /api/render       one pane's view: ?session=&view=&pane=&image=&scale=&top=&left=&height=&width=
    POST /api/upload       an image as the raw request body (?name=): a new picture to view

A render answers with lines of JSON (NDJSON), sent as they are ready: for a model pane a coarse
preview (the view at scale/4: 1/16 of the queries, stretched by the browser), then the full
resolution in bands of `tile_rows` rows, then {"type": "done", "ms", "psnr", ...}; bicubic and
ground-truth panes are cheap (NumPy, no model) and come in one piece without waiting for a slot. What each pixel is: see geometry.py.

Staying responsive: at most `max_renders` renders run at once (each band waits for a slot, so
the panes take turns); a view carries the page's `session` and a `view` number, and every band
first checks that no newer view of the same pane has arrived: a superseded render stops and says
{"type": "superseded"}. Encoder features are cached per (checkpoint, image) (features.py).
Only the viewer's own page may use the API (origin.py: another site's requests get a 403). Every
malformed request gets a 4xx with {"error": "..."}; nothing the browser sends is a path. The
status comes from the exception's type, never its message: a RequestError carries the status the
server chose where it refused the request, the project's errors (liif/errors.py) map through
ERROR_STATUS, and any other exception is a bug: 500, its traceback in the server's log. A render
that fails once its stream has begun (a memory budget too small for the image, a bug) ends with
{"type": "error", "error": "..."}, the line the pane shows (a bug's traceback goes to the server's log).
"""
import asyncio
import base64
import io
import json
import logging
import math
import os
import re
import time
from collections import OrderedDict

import anyio
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from liif.errors import InputTooLarge, LiifError
from liif.evaluation.metrics import psnr
from liif.serve import geometry, origin, sources
from liif.serve.features import FeatureCache, decode
from liif.serve.resample import resize_crop

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MIN_SCALE, MAX_SCALE = 1.0, 64.0
MAX_OFFSET = 10 ** 7
SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")


class RequestError(Exception):
    """A request the server refuses: HTTP `status` and a message for the user."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


# The status of each of the project's errors raised while answering a request; the first class the
# error is an instance of decides (the most specific first).
ERROR_STATUS = ((InputTooLarge, 413), (LiifError, 400))


def error_status(error):
    """The HTTP status for one of the project's errors (a LiifError)."""
    return next(status for kind, status in ERROR_STATUS if isinstance(error, kind))


class Superseded(Exception):
    """A newer view of the same pane arrived: this render stops."""


class Viewer:
    """What the server holds: checkpoints, pictures, the feature cache, the render slots and the
    newest view per (session, pane). Limits are arguments (conf/task/serve.yaml)."""

    def __init__(self, checkpoints, pictures, factor=None, max_viewport=1024, max_upload_bytes=16 << 20,
                 max_upload_pixels=1 << 20, max_uploads=8, max_renders=1, max_active=32, coarse_factor=4,
                 tile_rows=64, bsize=30000, cache_bytes=2 << 30, max_memory="auto", tile=None):
        self.checkpoints = {c.id: c for c in checkpoints}
        self.pictures = OrderedDict((p.id, p) for p in pictures)
        self.factor = factor
        self.max_viewport, self.max_upload_bytes, self.max_upload_pixels = max_viewport, max_upload_bytes, max_upload_pixels
        self.max_uploads, self.max_active = max_uploads, max_active
        self.coarse_factor, self.tile_rows, self.bsize = coarse_factor, tile_rows, bsize
        self.max_memory, self.tile = max_memory, tile  # the inference engine's budget and forced tile (liif/inference/tiled.py)
        self.cache = FeatureCache(cache_bytes)
        self.slots = asyncio.Semaphore(max_renders)
        self.latest = OrderedDict()  # (session, pane) -> the newest view number seen
        self.active = 0              # renders accepted and not finished
        self.uploads = 0
        self.stats = {"tiles": 0, "queries": 0, "superseded": 0}

    # ---- what the page needs ------------------------------------------------------------------
    def info(self):
        panes = [{"id": "bicubic", "kind": "bicubic", "title": "bicubic"}]
        panes += [{"id": c.id, "kind": "model", "title": c.label["model"], "label": c.label} for c in self.checkpoints.values()]
        if self.factor:
            panes.append({"id": "gt", "kind": "gt", "title": "ground truth"})
        return {"images": [p.as_dict() for p in self.pictures.values()], "panes": panes, "factor": self.factor,
                "coarse_factor": self.coarse_factor,
                "limits": {"max_viewport": self.max_viewport, "min_scale": MIN_SCALE, "max_scale": MAX_SCALE,
                           "max_upload_bytes": self.max_upload_bytes, "max_upload_pixels": self.max_upload_pixels}}

    def add_upload(self, name, rgb):
        self.uploads += 1
        picture = sources.make_picture(f"u{self.uploads}", name, rgb, self.factor)
        self.pictures[picture.id] = picture
        uploads = [k for k in self.pictures if k.startswith("u")]
        for old in uploads[:max(0, len(uploads) - self.max_uploads)]:  # the oldest uploads go, features too
            del self.pictures[old]
            self.cache.drop(lambda key, old=old: key[1] == old)
        return picture

    # ---- rendering ------------------------------------------------------------------------------
    def parse(self, params):
        """The render request's fields, or a RequestError saying which one is wrong and why."""
        session = params.get("session", "")
        if not SESSION.fullmatch(session):
            raise RequestError(400, "session must be 1-64 letters, digits, '-' or '_'")
        view = _integer(params, "view", 0, 2 ** 53)
        image = params.get("image")
        if image not in self.pictures:
            raise RequestError(404, f"no image {image!r}; GET /api/info lists them")
        picture = self.pictures[image]
        pane = params.get("pane")
        if pane not in self.checkpoints and pane != "bicubic" and not (pane == "gt" and picture.hr is not None):
            raise RequestError(404, f"no pane {pane!r} for this image; GET /api/info lists them")
        scale = _number(params, "scale", MIN_SCALE, MAX_SCALE)
        top, left = (_integer(params, k, -MAX_OFFSET, MAX_OFFSET) for k in ("top", "left"))
        height, width = (_integer(params, k, 1, self.max_viewport) for k in ("height", "width"))
        full = geometry.grid(picture.lr.shape[:2], scale)
        return dict(session=session, view=view, pane=pane, picture=picture, scale=scale,
                    region=geometry.visible(full, top, left, height, width))

    def claim(self, req):
        """Record req as the newest view of its pane (unless a newer one is already there)."""
        key = (req["session"], req["pane"])
        newest = max(self.latest.pop(key, -1), req["view"])
        self.latest[key] = newest
        while len(self.latest) > 4096:  # forget the oldest sessions
            self.latest.popitem(last=False)

    def check(self, req):
        if self.latest.get((req["session"], req["pane"]), -1) > req["view"]:
            raise Superseded

    async def run(self, req, fn, *args):
        """fn(*args) in a worker thread once a render slot is free, unless a newer view came meanwhile."""
        async with self.slots:
            self.check(req)
            return await anyio.to_thread.run_sync(fn, *args)

    async def stream(self, req):
        """The render's NDJSON lines (see the module docstring)."""
        self.active += 1
        t0 = time.perf_counter()
        done = {"type": "done", "view": req["view"], "psnr": None, "encoded": False}
        try:
            self.check(req)
            picture, region, pane = req["picture"], req["region"], req["pane"]
            if pane in self.checkpoints:
                frames = self._model_frames(req, self.checkpoints[pane], done)
            else:
                frames = self._resized_frames(req, picture.hr if pane == "gt" else picture.lr)
            full = np.zeros((region.height, region.width, 3), np.uint8)
            async for tile, pixels, is_coarse in frames:
                if not is_coarse:
                    full[tile.top - region.top:tile.top - region.top + tile.height] = pixels
                yield _line({"type": "tile", "coarse": is_coarse, **tile.as_dict(), "png": await _png(pixels)})
            if picture.hr is not None and pane != "gt" and region.size:  # after the frames: never delays one
                truth = await anyio.to_thread.run_sync(resize_crop, picture.hr, region)
                value = psnr(full.transpose(2, 0, 1)[None] / 255.0, truth.transpose(2, 0, 1)[None] / 255.0)
                done["psnr"] = None if math.isinf(value) else round(value, 3)
            done.update(ms=round((time.perf_counter() - t0) * 1000, 1), queries=region.size,
                        viewport=[region.height, region.width])
            yield _line(done)
        except Superseded:
            self.stats["superseded"] += 1
            yield _line({"type": "superseded", "view": req["view"]})
        except LiifError as e:  # e.g. infer.max_memory too small for this image: the pane shows the line
            yield _line({"type": "error", "view": req["view"], "error": str(e)})
        except Exception as e:  # a bug: its traceback in the server's log, one line in the pane (the stream has begun)
            log.exception("render failed")
            yield _line({"type": "error", "view": req["view"],
                         "error": f"internal error ({type(e).__name__}: {e}); the server's log has the traceback"})
        finally:
            self.active -= 1

    async def _model_frames(self, req, ckpt, done):
        picture, region = req["picture"], req["region"]
        if region.size == 0:
            return
        t0 = time.perf_counter()
        encoding, hit = await self.run(req, self._encode, ckpt, picture)
        if not hit:
            done.update(encoded=True, encode_ms=round((time.perf_counter() - t0) * 1000, 1))
        small = geometry.coarse(region, picture.lr.shape[:2], req["scale"], self.coarse_factor)
        if self.coarse_factor > 1 and small.size:
            yield small, await self.run(req, self._decode, ckpt, encoding, small), True
        for tile in geometry.tiles(region, self.tile_rows):
            yield tile, await self.run(req, self._decode, ckpt, encoding, tile), False

    async def _resized_frames(self, req, image):
        """Bicubic and ground truth: a few milliseconds of NumPy, so they never wait for a render slot."""
        region = req["region"]
        if region.size:
            yield region, await anyio.to_thread.run_sync(resize_crop, image, region), False

    def _encode(self, ckpt, picture):
        with ckpt.lock:
            return self.cache.get((ckpt.id, picture.id), ckpt.model, picture.lr, bsize=self.bsize,
                                  max_memory=self.max_memory, tile=self.tile)

    def _decode(self, ckpt, encoding, region):
        coord, cell = geometry.queries(region)
        with ckpt.lock:
            rgb = decode(encoding, coord, cell)
        self.stats["tiles"] += 1
        self.stats["queries"] += region.size
        return rgb.reshape(region.height, region.width, 3)


def _line(obj):
    return (json.dumps(obj) + "\n").encode()


async def _png(pixels):
    def encode():
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=1)
        return base64.b64encode(buf.getvalue()).decode()
    return await anyio.to_thread.run_sync(encode)


def _integer(params, key, lo, hi):
    raw = params.get(key)
    if raw is None:
        raise RequestError(400, f"missing {key}")
    if not re.fullmatch(r"-?\d{1,16}", raw):
        raise RequestError(400, f"{key} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise RequestError(400, f"{key} must be between {lo} and {hi}, got {value}")
    return value


def _number(params, key, lo, hi):
    raw = params.get(key)
    if raw is None:
        raise RequestError(400, f"missing {key}")
    try:
        value = float(raw[:40])
    except ValueError:
        raise RequestError(400, f"{key} must be a number, got {raw[:40]!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise RequestError(400, f"{key} must be between {lo:g} and {hi:g}, got {raw[:40]}")
    return value


# ---- the routes ---------------------------------------------------------------------------------
def create_app(viewer, allowed_hosts=("127.0.0.1", "localhost"), token=None):
    """The Starlette app serving `viewer`: requests with another Host header are refused (DNS rebinding),
    and API requests that do not come from the viewer's page (origin.py). `token`: the page's token
    (default: a new random one; `app.state.token`)."""
    token = token or origin.new_token()
    with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
        page = f.read().replace(origin.PLACEHOLDER, token)

    async def index(request):
        # no-store: a page cached by the browser would hold the token of an earlier server
        return HTMLResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    async def info(request):
        return JSONResponse(viewer.info())

    async def render(request):
        req = viewer.parse(request.query_params)
        if viewer.active >= viewer.max_active:
            raise RequestError(429, f"{viewer.active} renders are already waiting; try again")
        viewer.claim(req)
        return StreamingResponse(viewer.stream(req), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store"})

    async def upload(request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > viewer.max_upload_bytes:
            raise RequestError(413, f"the upload is {int(declared):,} bytes; the limit is {viewer.max_upload_bytes:,}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > viewer.max_upload_bytes:
                raise RequestError(413, f"the upload is over the limit of {viewer.max_upload_bytes:,} bytes")
        if not body:
            raise RequestError(400, "empty upload: send the image file as the request body")
        name = os.path.basename(request.query_params.get("name", "upload"))[:100]
        name = "".join(ch for ch in name if ch.isprintable()) or "upload"
        rgb = await anyio.to_thread.run_sync(sources.decode_upload, bytes(body), viewer.max_upload_pixels)
        return JSONResponse(viewer.add_upload(name, rgb).as_dict())

    async def refused(request, exc):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def user_error(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=error_status(exc))

    async def http_error(request, exc):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def bug(request, exc):  # Starlette raises it again after this answer: the server logs its traceback
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); the server's log has the traceback"},
                            status_code=500)

    routes = [Route("/", index), Route("/api/info", info), Route("/api/render", render),
              Route("/api/upload", upload, methods=["POST"]), Mount("/static", StaticFiles(directory=STATIC))]
    app = Starlette(routes=routes, exception_handlers={RequestError: refused, LiifError: user_error,
                                                          HTTPException: http_error, Exception: bug},
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
                                Middleware(origin.SameOriginOnly, token=token)])  # the Host is checked first
    app.state.token = token
    return app


# the page loads nothing from elsewhere, and is not framed by other sites
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff"}
