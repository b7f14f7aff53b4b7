"""The viewer in a real browser: Debian's headless Chromium driven by Playwright (nothing is
downloaded). The page is zoomed with the mouse wheel to a non-integer scale and by a typed scale,
panned by dragging, and the canvas of the LIIF pane must hold what `Model.query` predicts at the
viewport's pixel centres (within one grey level). A screenshot is kept: $LIIF_ARTIFACTS (or
pytest's temporary folder) /serve_viewer.png."""
import io
import os
import pathlib
import shutil
import socket
import threading
import time

import numpy as np
import pytest

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.isfile(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from liif.serve import sources  # noqa: E402
from liif.serve.app import Viewer, create_app  # noqa: E402
from serve_helpers import expected_view, photo, png_bytes, tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # Playwright adds its own fresh profile
VIEWPORT = (120, 160)  # device pixels, via ?height=&width=
API_REQUESTS = []  # (method, path, query, headers) of every /api/ request the server got


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The viewer on a free local port, served by uvicorn in a thread, with its model at hand."""
    import uvicorn

    ckpt = sources.load_checkpoints([tiny_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints" / "epoch-last.pth")],
                                    framework="torch", device="cpu")
    viewer = Viewer(ckpt, [sources.make_picture("i0", "photo.png", photo(30, 40, 3))], tile_rows=32)
    sock = socket.create_server(("127.0.0.1", 0))
    app = create_app(viewer)

    async def recorded(scope, receive, send):  # the API requests the browser sends, with their headers
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            API_REQUESTS.append((scope["method"], scope["path"], scope["query_string"].decode(),
                                 {k.decode(): v.decode() for k, v in scope["headers"]}))
        await app(scope, receive, send)
    server = uvicorn.Server(uvicorn.Config(recorded, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", viewer
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=60_000)
        try:
            # bypass_csp: Playwright's own waiting code evaluates strings, which the page's CSP forbids
            context = browser.new_context(viewport={"width": 700, "height": 360}, device_scale_factor=1,
                                          bypass_csp=True, accept_downloads=True)
            context.set_default_timeout(60_000)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server[0] + f"?height={VIEWPORT[0]}&width={VIEWPORT[1]}")
            wait_settled(page)
            yield page
            assert not errors, errors
        finally:
            browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Where the screenshot is kept: $LIIF_ARTIFACTS (CI can upload it), else pytest's temporary folder."""
    folder = pathlib.Path(os.environ.get("LIIF_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_settled(page):
    page.wait_for_function("window.viewer && window.viewer.settled", timeout=60_000)


def state(page):
    return page.evaluate("({scale: viewer.scale, top: viewer.top, left: viewer.left, height: viewer.height,"
                         " width: viewer.width, view: viewer.view})")


def canvas_rgba(page, pane):
    data = page.evaluate(f"""(() => {{
        const c = document.querySelector('[data-pane="{pane}"] canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }})()""")
    return np.array(data, np.uint8).reshape(VIEWPORT[0], VIEWPORT[1], 4)


def assert_canvas_is_model_query(page, viewer):
    s = state(page)
    rgba = canvas_rgba(page, "m0")
    want, inside = expected_view(viewer.checkpoints["m0"].model, viewer.pictures["i0"].lr, s["scale"],
                                 s["top"], s["left"], s["height"], s["width"])
    assert inside.any() and (rgba[..., 3][inside] == 255).all() and (rgba[..., 3][~inside] == 0).all()
    diff = np.abs(rgba[..., :3].astype(int) - want)[inside]
    assert diff.max() <= 1, f"canvas differs from Model.query by up to {diff.max()} grey levels at {s}"
    return s


def test_zoom_pan_and_the_canvas_is_model_query(page, server, artifacts):
    viewer = server[1]
    before = state(page)
    assert (before["height"], before["width"]) == VIEWPORT
    box = page.locator('[data-pane="m0"] canvas').bounding_box()
    # zoom in with the wheel, around a point of the canvas: a non-integer scale
    page.mouse.move(box["x"] + 50, box["y"] + 40)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"viewer.scale > {before['scale'] * 1.2}")
    # pan by dragging
    zoomed = state(page)
    page.mouse.move(box["x"] + 100, box["y"] + 80)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + 50, steps=6)
    page.mouse.up()
    wait_settled(page)
    s = assert_canvas_is_model_query(page, viewer)
    assert s["scale"] != round(s["scale"]) and s["scale"] > before["scale"]
    assert (s["left"] - zoomed["left"], s["top"] - zoomed["top"]) == (40, 30)  # dragged 40 px left, 30 px up
    shot = artifacts / "serve_viewer.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0


def test_typed_scale_and_download(page, server):
    page.fill("#scale", "3.37")
    page.press("#scale", "Enter")
    wait_settled(page)
    s = assert_canvas_is_model_query(page, server[1])
    assert s["scale"] == 3.37
    with page.expect_download() as info:
        page.click('[data-pane="m0"] .download')
    from PIL import Image
    with open(info.value.path(), "rb") as f:
        png = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGBA"))
    np.testing.assert_array_equal(png, canvas_rgba(page, "m0"))




def test_the_slider_zooms_on_a_log_scale(page, server):
    page.fill("#slider", "500")  # halfway between x1 and x64: x8
    wait_settled(page)
    s = assert_canvas_is_model_query(page, server[1])
    assert s["scale"] == pytest.approx(8.0)
    assert page.locator("#status").inner_text().startswith("x8.00 · viewport 160×120 · render")


def test_an_upload_becomes_the_viewed_image(page, server, tmp_path):
    from PIL import Image
    path = tmp_path / "mine.png"
    Image.fromarray(photo(18, 26, 9)).save(path)
    page.set_input_files("#upload", str(path))
    page.wait_for_function("viewer.picture && viewer.picture.name === 'mine.png'")
    wait_settled(page)
    s = state(page)
    picture = server[1].pictures[page.evaluate("viewer.picture.id")]
    assert picture.lr.shape == (18, 26, 3) and page.locator("#image option").count() == 2
    rgba = canvas_rgba(page, "m0")
    want, inside = expected_view(server[1].checkpoints["m0"].model, picture.lr, s["scale"], s["top"], s["left"],
                                 s["height"], s["width"])
    assert inside.any() and np.abs(rgba[..., :3].astype(int) - want)[inside].max() <= 1


ATTACK = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="{viewer}api/upload?name=form.png" enctype="text/plain" target="sink">
<input name="x" value="y"></form>
<img src="{viewer}api/render?session=evil&view=1&pane=m0&image=i0&scale=2&top=0&left=0&height=8&width=8">
<script>
(async () => {{
  const png = await (await fetch("data:image/png;base64,{png}")).blob();
  const tries = [
    fetch("{viewer}api/upload?name=nocors.png", {{method: "POST", mode: "no-cors", body: png}}).then(() => "sent"),
    fetch("{viewer}api/upload?name=token.png", {{method: "POST", body: png, headers: {{"X-LIIF-Token": "guess"}}}})
      .then(() => "sent", () => "blocked"),
    fetch("{viewer}api/info").then((r) => r.text(), () => "unreadable"),
  ];
  document.getElementById("form").submit();
  window.results = await Promise.all(tries);
}})();
</script></body></html>"""


@pytest.mark.parametrize("attacker_host, site", [("127.0.0.1", "same-site"), ("localhost", "cross-site")])
def test_another_sites_page_cannot_use_the_viewer(page, server, attacker_host, site):
    """A page of another origin open in the same browser (another port of 127.0.0.1: the same site; or
    localhost: another site) sends what it can to the viewer: a form POST, a no-cors fetch POST of a PNG,
    a POST with a guessed token (preflighted), an <img> render, a read of /api/info. Each reaches the
    server with the browser's own headers and changes nothing."""
    import base64
    import http.server

    url, viewer = server
    before = (list(viewer.pictures), dict(viewer.stats))
    png = base64.b64encode(png_bytes(photo(8, 8))).decode()
    html = ATTACK.format(viewer=url, png=png).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    start = len(API_REQUESTS)
    context = page.context.browser.new_context()  # the viewer's browser; its own context, the page's CSP in force
    try:
        attack = context.new_page()
        attack.goto(f"http://{attacker_host}:{evil.server_address[1]}/")
        attack.wait_for_function("window.results", timeout=60_000)
        results = attack.evaluate("window.results")
        deadline = time.time() + 30  # the form and the image are sent on their own time
        while time.time() < deadline and not {"upload?name=form.png", "render?session=evil"} <= _sent(start):
            time.sleep(0.1)
    finally:
        context.close()
        evil.shutdown()
    assert results == ["sent", "blocked", "unreadable"], results
    assert {"upload?name=form.png", "upload?name=nocors.png", "render?session=evil", "info?"} <= _sent(start), _sent(start)
    attacks = API_REQUESTS[start:]
    assert all(h.get("sec-fetch-site") == site for _, _, _, h in attacks), attacks
    assert (list(viewer.pictures), dict(viewer.stats)) == before and not any(k[0] == "evil" for k in viewer.latest)


def _sent(start):
    return {f"{path.rsplit('/', 1)[1]}?{query.split('&')[0]}" for _, path, query, _ in API_REQUESTS[start:]}
