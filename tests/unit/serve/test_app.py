"""The viewer's web API (liif/serve/app.py), in process: what a render holds, caching, dropping
superseded views, the limits, and a 4xx with a clear message for every malformed request."""
import asyncio
import threading
import types
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette >= 1.10 would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from liif.errors import BadInput, ImageError, InputTooLarge  # noqa: E402
from liif.serve import sources  # noqa: E402
from liif.serve.app import Viewer, create_app  # noqa: E402
from liif.serve.origin import TOKEN_HEADER, page_token  # noqa: E402
from serve_helpers import assemble, expected_view, messages, photo, png_bytes, png_header, tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = [tiny_checkpoint(root / "run_a" / "checkpoints" / "epoch-last.pth", seed=0, epoch=7),
             tiny_checkpoint(root / "run_b" / "checkpoints" / "epoch-last.pth", seed=1, epoch=3, framework="jittor")]
    return sources.load_checkpoints(paths, framework="torch", device="cpu")


def make_viewer(checkpoints, factor=None, **limits):
    pictures = [sources.make_picture("i0", "a.png", photo(24, 36, 0), factor),
                sources.make_picture("i1", "b.png", photo(20, 28, 1), factor)]
    return Viewer(checkpoints, pictures, factor=factor, **{"tile_rows": 16, **limits})


def client(viewer, **headers):
    """A client as the viewer's page is one: it sends the page's token (and any other `headers`)."""
    app = create_app(viewer)
    return TestClient(app, base_url="http://127.0.0.1", headers={TOKEN_HEADER: app.state.token, **headers})


def render(c, **params):
    view = {"session": "s", "view": 1, "pane": "m0", "image": "i0", "scale": 2.7, "top": -5, "left": 20,
            "height": 37, "width": 53, **params}
    r = c.get("/api/render", params=view)
    assert r.status_code == 200, r.text
    return messages(r.text)


def test_info_lists_images_panes_and_labels(checkpoints):
    info = client(make_viewer(checkpoints, factor=2)).get("/api/info").json()
    assert [p["id"] for p in info["panes"]] == ["bicubic", "m0", "m1", "gt"]
    assert info["panes"][1]["label"] == {"model": "liif (edsr-baseline)", "framework": "torch", "run": "run_a", "epoch": 7}
    assert info["panes"][2]["label"]["framework"] == "jittor" and info["panes"][2]["label"]["epoch"] == 3
    assert info["images"][0] == {"id": "i0", "name": "a.png", "height": 12, "width": 18, "ground_truth": True, "factor": 2}
    assert info["limits"]["max_scale"] >= 50


def test_a_viewport_is_the_same_crop_of_a_full_upscale(checkpoints):
    viewer = make_viewer(checkpoints)
    msgs = render(client(viewer), scale=2.7, top=-5, left=20, height=37, width=53)
    assert msgs[0]["type"] == "tile" and msgs[0]["coarse"]  # the preview comes first
    assert [m["type"] for m in msgs][-1] == "done" and msgs[-1]["queries"] == 32 * 53
    got, covered = assemble(msgs, 37, 53, -5, 20)
    image = viewer.pictures["i0"].lr
    full = checkpoints[0].model.upscale(image, (65, 97))  # round(24*2.7), round(36*2.7)
    assert covered[5:].all() and not covered[:5].any()  # rows -5..-1 are outside the image
    np.testing.assert_array_equal(got[5:], full[0:32, 20:73])


def test_a_viewport_is_model_query_at_the_pixel_centres(checkpoints):
    viewer = make_viewer(checkpoints)
    c = client(viewer)
    for pane, ckpt in (("m0", checkpoints[0]), ("m1", checkpoints[1])):
        for scale, top, left in ((1.0, -3, -4), (3.37, 40, 7), (50.0, 600, 900)):
            msgs = render(c, pane=pane, scale=scale, top=top, left=left, height=30, width=41)
            got, covered = assemble(msgs, 30, 41, top, left)
            want, inside = expected_view(ckpt.model, viewer.pictures["i0"].lr, scale, top, left, 30, 41)
            assert (covered == inside).all() and inside.any()
            diff = np.abs(got.astype(int) - want)[inside]
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (pane, scale)


def test_an_lte_viewport_in_tiles_is_model_query(tmp_path):
    """Another decoder (LTE) in the viewer, its image encoded in 12-pixel tiles: the viewer knows
    only the decoder contract, and shows what `Model.query` computes."""
    from serve_helpers import TINY_LTE
    lte = sources.load_checkpoints([tiny_checkpoint(tmp_path / "run_lte" / "checkpoints" / "epoch-last.pth",
                                                    spec=TINY_LTE)], framework="torch", device="cpu")
    viewer = make_viewer(lte, tile=12)
    c = client(viewer)
    for scale, top, left in ((1.0, -3, -4), (3.37, 40, 7), (7.9, 60, 190)):
        got, covered = assemble(render(c, pane="m0", scale=scale, top=top, left=left, height=30, width=41),
                                30, 41, top, left)
        want, inside = expected_view(lte[0].model, viewer.pictures["i0"].lr, scale, top, left, 30, 41)
        assert (covered == inside).all() and inside.any()
        diff = np.abs(got.astype(int) - want)[inside]
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99, scale
    assert viewer.cache.get(("m0", "i0"), None, None)[0].plan().n_tiles == 6


def test_the_coarse_preview_is_the_view_at_a_quarter_of_the_scale(checkpoints):
    viewer = make_viewer(checkpoints)
    msgs = render(client(viewer), scale=8.0, top=0, left=0, height=40, width=48)
    coarse = [m for m in msgs if m["type"] == "tile" and m["coarse"]]
    assert len(coarse) == 1 and coarse[0]["grid"] == [48, 72]  # round(24*2), round(36*2)
    assert (coarse[0]["top"], coarse[0]["left"], coarse[0]["height"], coarse[0]["width"]) == (0, 0, 10, 12)
    got, _ = assemble([{**coarse[0], "coarse": False}], 10, 12, 0, 0)
    want, _ = expected_view(checkpoints[0].model, viewer.pictures["i0"].lr, 2.0, 0, 0, 10, 12)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_bicubic_and_ground_truth_panes_and_psnr(checkpoints):
    viewer = make_viewer(checkpoints, factor=2)
    c = client(viewer)
    picture = viewer.pictures["i0"]
    # at the ground truth's own scale its pane is the HR image itself, pixel for pixel
    gt, covered = assemble(render(c, pane="gt", scale=2, top=3, left=4, height=15, width=20), 15, 20, 3, 4)
    np.testing.assert_array_equal(gt, picture.hr[3:18, 4:24])
    # bicubic: Pillow's resize of the LR image to the view's grid, same crop (within Pillow's fixed point)
    msgs = render(c, pane="bicubic", scale=2.3, top=2, left=5, height=20, width=30)
    bic, _ = assemble(msgs, 20, 30, 2, 5)
    full = np.asarray(Image.fromarray(picture.lr).resize((41, 28), Image.BICUBIC))  # round(18*2.3), round(12*2.3)
    assert np.abs(bic.astype(int) - full[2:22, 5:35]).max() <= 1
    # PSNR over the visible region, against the HR resized to the same grid, computed here
    msgs = render(c, pane="m0", scale=2, top=0, left=0, height=24, width=36)
    sr, _ = assemble(msgs, 24, 36, 0, 0)
    mse = np.mean((sr / 255.0 - picture.hr / 255.0) ** 2)
    assert msgs[-1]["psnr"] == pytest.approx(-10 * np.log10(mse), abs=1e-3)


def test_encoder_features_are_cached_per_image_and_checkpoint(checkpoints):
    viewer = make_viewer(checkpoints)
    c = client(viewer)
    first = render(c, view=1)[-1]
    second = render(c, view=2, scale=4.1, left=0)[-1]
    assert first["encoded"] and not second["encoded"] and viewer.cache.encodes == 1
    render(c, view=3, image="i1")
    render(c, view=1, pane="m1")
    assert viewer.cache.encodes == 3
    render(c, view=4, image="i0", scale=1.5)
    assert viewer.cache.encodes == 3


def test_the_cache_keeps_to_its_budget(checkpoints):
    viewer = make_viewer(checkpoints, cache_bytes=1)  # only the newest entry fits
    c = client(viewer)
    render(c, view=1, image="i0")
    render(c, view=2, image="i1")
    assert ("m0", "i1") in viewer.cache and ("m0", "i0") not in viewer.cache
    render(c, view=3, image="i0")
    assert viewer.cache.encodes == 3


def test_the_cache_drops_the_least_recently_used_beyond_its_bytes():
    from liif.serve.features import FeatureCache

    class Sized:  # a model whose encoding of `image` holds `image` bytes
        def encode(self, image, **options):
            return types.SimpleNamespace(prepare=lambda: types.SimpleNamespace(nbytes=image))

    cache = FeatureCache(100)
    for key, nbytes in (("a", 40), ("b", 40)):
        cache.get(key, Sized(), nbytes)
    assert cache.get("a", None, None)[1]  # a hit: "a" is now the most recently used
    cache.get("c", Sized(), 40)           # 120 bytes: the least recently used ("b") goes
    assert "a" in cache and "c" in cache and "b" not in cache
    cache.get("d", Sized(), 60)           # 140 bytes: "a" goes, and 100 fit
    assert ["d" in cache, "a" in cache, "c" in cache] == [True, False, True]
    cache.get("e", Sized(), 150)          # over the whole budget: kept, alone
    assert "e" in cache and "d" not in cache and cache.encodes == 5


async def _render_async(app, **params):
    import httpx
    view = {"session": "s", "view": 1, "pane": "m0", "image": "i0", "scale": 3.3, "top": 0, "left": 0,
            "height": 40, "width": 50, **params}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                 headers={TOKEN_HEADER: app.state.token}) as c:
        r = await c.get("/api/render", params=view)
    assert r.status_code == 200, r.text
    return messages(r.text)


def test_a_superseded_view_is_dropped_before_it_renders(checkpoints):
    viewer = make_viewer(checkpoints)
    app = create_app(viewer)

    async def scenario():
        await viewer.slots.acquire()  # a render is busy: the next views queue
        old = asyncio.create_task(_render_async(app, view=1))
        other_pane = asyncio.create_task(_render_async(app, view=1, pane="m1"))
        while viewer.active < 2:
            await asyncio.sleep(0.01)
        new = asyncio.create_task(_render_async(app, view=2, left=10))
        while viewer.active < 3:
            await asyncio.sleep(0.01)
        viewer.slots.release()
        return await old, await other_pane, await new

    old, other_pane, new = asyncio.run(scenario())
    assert [m["type"] for m in old] == ["superseded"]
    assert other_pane[-1]["type"] == "done" and new[-1]["type"] == "done"
    # only the two live views were decoded: their coarse previews and bands, nothing of view 1 of m0
    decoded = sum(m["height"] * m["width"] for m in other_pane + new if m["type"] == "tile")
    assert decoded > 2 * new[-1]["queries"]
    assert viewer.stats["superseded"] == 1 and viewer.stats["queries"] == decoded
    # a view that arrives after a newer one of the same pane is dropped at once
    late = asyncio.run(_render_async(app, view=1))
    assert [m["type"] for m in late] == ["superseded"]


def test_a_render_stops_at_the_next_band_when_a_newer_view_arrives(checkpoints):
    viewer = make_viewer(checkpoints)
    req = viewer.parse({"session": "s", "view": "5", "pane": "m0", "image": "i0", "scale": "3", "top": "0",
                        "left": "0", "height": "64", "width": "54"})
    viewer.claim(req)

    async def scenario():
        stream = viewer.stream(req)
        first = await stream.__anext__()   # the coarse preview
        second = await stream.__anext__()  # the first band
        viewer.claim({**req, "view": 6})
        rest = [line async for line in stream]
        return [first, second, *rest]

    msgs = messages(b"".join(asyncio.run(scenario())).decode())
    assert [m["type"] for m in msgs] == ["tile", "tile", "superseded"]
    assert msgs[0]["coarse"] and not msgs[1]["coarse"] and viewer.stats["tiles"] == 2


def test_at_most_max_renders_run_at_once(checkpoints):
    viewer = make_viewer(checkpoints, max_renders=1)
    running, most, lock = [0], [0], threading.Lock()
    decode = viewer._decode

    def counted(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return decode(*args)
        finally:
            with lock:
                running[0] -= 1

    viewer._decode = counted
    app = create_app(viewer)

    async def scenario():
        return await asyncio.gather(*(_render_async(app, pane=p, session=f"s{i}") for i, p in enumerate(["m0", "m1", "m0"])))

    results = asyncio.run(scenario())
    assert all(r[-1]["type"] == "done" for r in results) and most[0] == 1


def test_too_many_waiting_renders_get_429(checkpoints):
    r = client(make_viewer(checkpoints, max_active=0)).get("/api/render", params={
        "session": "s", "view": 1, "pane": "m0", "image": "i0", "scale": 2, "top": 0, "left": 0, "height": 8, "width": 8})
    assert r.status_code == 429 and "waiting" in r.json()["error"]


GOOD = {"session": "s", "view": "1", "pane": "m0", "image": "i0", "scale": "2", "top": "0", "left": "0",
        "height": "8", "width": "8"}


@pytest.mark.parametrize("change, status, words", [
    ({"session": None}, 400, "session"), ({"session": "a/b"}, 400, "session"), ({"session": "x" * 65}, 400, "session"),
    ({"view": None}, 400, "missing view"), ({"view": "1.5"}, 400, "view must be an integer"), ({"view": "-1"}, 400, "view"),
    ({"pane": None}, 404, "no pane"), ({"pane": "m9"}, 404, "no pane"), ({"pane": "gt"}, 404, "no pane"),
    ({"pane": "../../etc/passwd"}, 404, "no pane"),
    ({"image": None}, 404, "no image"), ({"image": "/etc/passwd"}, 404, "no image"), ({"image": "i0.png"}, 404, "no image"),
    ({"scale": None}, 400, "missing scale"), ({"scale": "abc"}, 400, "scale must be a number"),
    ({"scale": "nan"}, 400, "scale must be between"), ({"scale": "inf"}, 400, "scale must be between"),
    ({"scale": "0.5"}, 400, "scale must be between"), ({"scale": "65"}, 400, "scale must be between"),
    ({"scale": "1e400"}, 400, "scale"), ({"top": "1e3"}, 400, "top must be an integer"),
    ({"left": "99999999999"}, 400, "left must be between"), ({"left": ""}, 400, "left must be an integer"),
    ({"height": "0"}, 400, "height must be between"), ({"width": "1025"}, 400, "width must be between"),
    ({"height": "-5"}, 400, "height"), ({"width": None}, 400, "missing width"),
])
def test_every_malformed_render_request_gets_a_clear_4xx(checkpoints, change, status, words):
    c = client(make_viewer(checkpoints))
    params = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = c.get("/api/render", params=params)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert c.get("/api/render", params=GOOD).status_code == 200  # and the server goes on


def test_uploads(checkpoints):
    viewer = make_viewer(checkpoints, factor=2, max_uploads=2, max_upload_bytes=50_000, max_upload_pixels=64 * 64)
    c = client(viewer)
    image = photo(30, 40, 5)
    r = c.post("/api/upload?name=../../holiday.png", content=png_bytes(image))
    assert r.status_code == 200, r.text
    pic = r.json()
    assert pic["name"] == "holiday.png" and (pic["height"], pic["width"], pic["ground_truth"]) == (15, 20, True)
    msgs = render(c, image=pic["id"], scale=2, top=0, left=0, height=30, width=40, pane="gt")
    np.testing.assert_array_equal(assemble(msgs, 30, 40, 0, 0)[0], image)
    render(c, image=pic["id"], pane="m0", view=2)
    assert ("m0", pic["id"]) in viewer.cache
    # the oldest upload goes (with its features) when more than max_uploads arrive
    for seed in (6, 7):
        assert c.post("/api/upload", content=png_bytes(photo(20, 20, seed))).status_code == 200
    assert pic["id"] not in viewer.pictures and ("m0", pic["id"]) not in viewer.cache
    assert c.get("/api/render", params={**GOOD, "image": pic["id"]}).status_code == 404
    assert {"i0", "i1"} <= set(viewer.pictures)  # the command line's images stay


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty upload"), (b"not an image at all", 400, "not an image"),
    (png_bytes(photo(30, 40))[:200], 400, "damaged"), (b"\x89PNG" + bytes(60_000), 413, "limit"),
    (png_bytes(photo(80, 80)), 413, "at most 4,096 pixels"), (png_bytes(photo(1, 1)), 400, "smaller than downscale"),
    # a header of 20000 x 20000 pixels: Pillow's decompression-bomb refusal, which said "not an image"
    (png_header(20000, 20000), 413, "the viewer takes at most 4,096 pixels"),
    (png_header(10000, 10000), 413, "is 10000x10000 pixels"),  # under Pillow's refusal, over its warning
], ids=["empty", "not an image", "truncated", "over the byte limit", "over the pixel cap", "smaller than downscale",
        "a header past Pillow's bomb limit", "a header past Pillow's bomb warning"])
def test_bad_uploads_get_a_clear_4xx(checkpoints, body, status, words):
    viewer = make_viewer(checkpoints, factor=2, max_upload_bytes=50_000, max_upload_pixels=64 * 64)
    c = client(viewer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor a DecompressionBombWarning in the server's log
        r = c.post("/api/upload", content=body)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert set(viewer.pictures) == {"i0", "i1"} and c.get("/api/info").status_code == 200


@pytest.mark.parametrize("error, status", [
    (InputTooLarge("the picture is huge"), 413),         # says nothing of a limit
    (ImageError("at most one frame is allowed"), 400),    # says "at most", and is no size limit
    (BadInput("the image is over the limit"), 400),
])
def test_an_upload_refusal_takes_its_status_from_the_error_type_not_its_wording(checkpoints, monkeypatch, error, status):
    def refuse(data, max_pixels):
        raise error
    monkeypatch.setattr(sources, "decode_upload", refuse)
    r = client(make_viewer(checkpoints)).post("/api/upload", content=png_bytes(photo(8, 8)))
    assert r.status_code == status and r.json() == {"error": str(error)}


def test_a_bug_while_answering_a_request_is_a_500_and_reaches_the_server(checkpoints, monkeypatch):
    """Not one of the project's errors, whatever its message: a bug, never a 4xx. Starlette raises it
    again after answering, so the server logs its traceback (as the test client shows by raising it)."""
    def broken(data, max_pixels):
        raise RuntimeError("the image is at most 3 pixels")
    monkeypatch.setattr(sources, "decode_upload", broken)
    viewer = make_viewer(checkpoints)
    app = create_app(viewer)
    quiet = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False, headers={TOKEN_HEADER: app.state.token})
    r = quiet.post("/api/upload", content=png_bytes(photo(8, 8)))
    assert r.status_code == 500 and "internal error (RuntimeError: the image is at most 3 pixels)" in r.json()["error"]
    with pytest.raises(RuntimeError, match="at most 3 pixels"):
        client(viewer).post("/api/upload", content=png_bytes(photo(8, 8)))
    assert set(viewer.pictures) == {"i0", "i1"} and quiet.get("/api/info").status_code == 200


def test_the_page_and_nothing_else_is_served(checkpoints):
    c = client(make_viewer(checkpoints))
    page = c.get("/")
    assert page.status_code == 200 and "static/viewer.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/static/viewer.js").status_code == 200 and c.get("/static/viewer.css").status_code == 200
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/etc/passwd", "/api/nothing"):
        assert c.get(path).status_code == 404, path
    assert c.post("/api/render", params=GOOD).status_code == 405
    assert c.get("/api/upload").status_code == 405
    # another Host (a DNS-rebinding page) is refused
    assert TestClient(create_app(make_viewer(checkpoints)), base_url="http://evil.example").get("/api/info").status_code == 400


def test_a_tiled_encoding_renders_the_same_and_decodes_without_reencoding(checkpoints, monkeypatch):
    """With tiles (infer.tile: 12 input pixels, 2 x 3 of them), the viewer's encoding is the inference
    engine's (liif/inference/tiled.py): the same pixels as one tile, and after the first render no tile is
    encoded again nor its latent table rebuilt."""
    from liif.backends import torch as T
    net = checkpoints[0].model.net
    tiled_viewer = make_viewer(checkpoints, tile=12)
    split, whole = client(tiled_viewer), client(make_viewer(checkpoints))
    views = ((1.0, -3, -4), (3.37, 40, 7), (7.9, 60, 190))
    wants = [assemble(render(whole, view=n, scale=s, top=t, left=l), 37, 53, t, l) for n, (s, t, l) in enumerate(views, 1)]
    calls = {"encode": 0, "unfold3x3": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped
    for number, ((scale, top, left), (want, inside)) in enumerate(zip(views, wants), 1):
        if number == 2:  # every tile was encoded, with its latent table, by the first render: now only decoded
            monkeypatch.setattr(net, "encode", counting("encode", net.encode))
            monkeypatch.setattr(T, "unfold3x3", counting("unfold3x3", T.unfold3x3))
        got, covered = assemble(render(split, view=number, scale=scale, top=top, left=left), 37, 53, top, left)
        assert (covered == inside).all() and inside.any()
        diff = np.abs(got.astype(int) - want.astype(int))[inside]
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99, scale
    monkeypatch.undo()
    assert calls == {"encode": 0, "unfold3x3": 0}
    encoding = tiled_viewer.cache.get(("m0", "i0"), None, None)[0]
    assert encoding.plan().n_tiles == 6 and len(encoding._latents) == 6


def test_a_render_that_fails_after_its_stream_began_ends_with_an_error_line(checkpoints):
    """A memory budget too small for the image is only known once the render runs (the stream has
    begun, its status sent): the stream ends with the one-line error the pane shows, naming the minimum."""
    msgs = render(client(make_viewer(checkpoints, max_memory="1KB")))
    assert msgs[-1]["type"] == "error" and "too small" in msgs[-1]["error"] and "use max_memory=" in msgs[-1]["error"]
    assert not any(m["type"] == "done" for m in msgs)
    # the bicubic pane does not use the model, and the server is still up
    assert render(client(make_viewer(checkpoints, max_memory="1KB")), pane="bicubic")[-1]["type"] == "done"


# ---- requests from other sites (issue 21) -------------------------------------------------------
SITE = "http://127.0.0.1"  # the test client's origin (its Host header is 127.0.0.1)
CROSS_SITE = {  # what a browser sends with another page's request; each alone is refused
    "another site": {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    "another site, Fetch Metadata only": {"Sec-Fetch-Site": "cross-site"},
    "another port of this host (same-site)": {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
    "another origin, Origin only": {"Origin": "http://evil.example"},
    "another port, Origin only": {"Origin": "http://127.0.0.1:9999"},
    "https on this host": {"Origin": "https://127.0.0.1"},
    "a sandboxed frame or data: URL": {"Origin": "null"},
    "a top-level navigation typed or bookmarked": {"Sec-Fetch-Site": "none"},
    "no Origin and no token (an old browser)": {TOKEN_HEADER: None},
    "no Origin and a wrong token": {TOKEN_HEADER: "x" * 43},
    "the page's origin but no token": {"Sec-Fetch-Site": "same-origin", "Origin": SITE, TOKEN_HEADER: None},
}


def _send(page_client, endpoint, headers):
    """One request to `endpoint` (upload, render or info) of the client's app with the page's token
    and `headers` (None removes one)."""
    c = TestClient(page_client.app, base_url=SITE)
    headers = {k: v for k, v in {TOKEN_HEADER: page_client.app.state.token, **headers}.items() if v is not None}
    if endpoint == "upload":
        return c.post("/api/upload?name=evil.png", content=png_bytes(photo(8, 8)), headers=headers)
    if endpoint == "render":
        return c.get("/api/render", params={**GOOD, "session": "victim", "view": 99}, headers=headers)
    return c.get("/api/info", headers=headers)


@pytest.mark.parametrize("endpoint", ["upload", "render", "info"])
@pytest.mark.parametrize("case", list(CROSS_SITE))
def test_cross_site_requests_to_the_viewer_are_refused(checkpoints, case, endpoint):
    """Another page open in the browser can send requests to 127.0.0.1 (an upload evicts the user's
    own; a render takes the render slots and supersedes the user's view): a 403 before any work."""
    viewer = make_viewer(checkpoints, max_uploads=1)
    c = client(viewer)
    assert c.post("/api/upload?name=mine.png", content=png_bytes(photo(8, 8))).status_code == 200
    before = (list(viewer.pictures), dict(viewer.latest), dict(viewer.stats), viewer.uploads)
    r = _send(c, endpoint, CROSS_SITE[case])
    assert r.status_code == 403 and r.json()["error"].startswith("refused: "), r.text
    assert (list(viewer.pictures), dict(viewer.latest), dict(viewer.stats), viewer.uploads) == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.1:8000"])
def test_the_pages_own_requests_pass_as_a_browser_sends_them(checkpoints, host):
    """Chromium's headers on the page's fetch(): Fetch Metadata same-origin, the page's Origin on a POST."""
    viewer = make_viewer(checkpoints)
    c = client(viewer)
    page = {"Host": host, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    assert _send(c, "info", page).status_code == 200
    assert _send(c, "render", page).status_code == 200
    r = _send(c, "upload", {**page, "Origin": f"http://{host}"})
    assert r.status_code == 200 and r.json()["name"] == "evil.png", r.text


def test_the_token_is_in_the_page_only_and_new_for_every_app(checkpoints):
    viewer = make_viewer(checkpoints)
    apps = [create_app(viewer), create_app(viewer)]
    pages = [TestClient(app, base_url=SITE).get("/") for app in apps]
    tokens = [page_token(p.text) for p in pages]
    assert tokens == [app.state.token for app in apps] and tokens[0] != tokens[1] and len(tokens[0]) >= 40
    assert all(p.headers["cache-control"] == "no-store" for p in pages)
    assert "default-src 'self'" in pages[0].headers["content-security-policy"]
    # the page's files and the static copy of the page never hold it
    plain = TestClient(apps[0], base_url=SITE)
    assert all(tokens[0] not in plain.get(path).text for path in ("/static/index.html", "/static/viewer.js"))
    # one app's token does not open another
    other = TestClient(apps[1], base_url=SITE, headers={TOKEN_HEADER: tokens[0]})
    assert other.get("/api/info").status_code == 403
    assert TestClient(apps[1], base_url=SITE, headers={TOKEN_HEADER: tokens[1]}).get("/api/info").status_code == 200


def test_a_refusal_takes_its_status_from_the_error_type_not_its_wording():
    from starlette.datastructures import Headers

    from liif.serve import origin
    with pytest.raises(origin.Refused) as refused:
        origin.check(Headers({"host": "127.0.0.1", "sec-fetch-site": "cross-site"}), "t")
    assert refused.value.status == 403 and "403" not in str(refused.value)
