"""`python run.py task=serve ...`: through the CLI (a child of the CLI server) it prints a local URL,
serves the checkpoints of a sweep and stops on Ctrl-C; bad input is the usual one-line error (the
CLI's path after composition, in process)."""
import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from conftest import ForkedCli, compose, run_task_with_overrides
from serve_helpers import photo, tiny_checkpoint

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
from liif.serve.origin import TOKEN_HEADER, page_token  # noqa: E402


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep folder of two runs with checkpoints, and an image."""
    from PIL import Image
    root = tmp_path_factory.mktemp("multirun")
    tiny_checkpoint(root / "0_liif_torch" / "checkpoints" / "epoch-last.pth", seed=0, epoch=2)
    tiny_checkpoint(root / "1_liif_jittor" / "checkpoints" / "epoch-last.pth", seed=1, epoch=5, framework="jittor")
    (root / "2_failed_run").mkdir()  # a run that never wrote a checkpoint is not a pane
    Image.fromarray(photo(24, 32)).save(root / "photo.png")
    return root


@pytest.mark.slow
def test_serves_a_sweep_on_localhost_and_stops_on_ctrl_c(sweep, tmp_path):
    proc = ForkedCli(["task=serve", f"dir={sweep}", f"input={sweep / 'photo.png'}", "task.port=0", "task.downscale=2",
                      "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"])
    try:
        url = read_url(proc, timeout=240)
        assert url.startswith("http://127.0.0.1:")
        token = page_token(urllib.request.urlopen(url, timeout=30).read().decode())  # as the page holds it
        get = lambda path, **headers: urllib.request.urlopen(  # noqa: E731
            urllib.request.Request(url + path, headers={TOKEN_HEADER: token, **headers}), timeout=60)
        info = json.load(get("api/info"))
        assert [p["id"] for p in info["panes"]] == ["bicubic", "m0", "m1", "gt"]
        assert [(p["label"]["run"], p["label"]["framework"], p["label"]["epoch"]) for p in info["panes"][1:3]] == \
            [("0_liif_torch", "torch", 2), ("1_liif_jittor", "jittor", 5)]
        assert info["images"] == [{"id": "i0", "name": "photo.png", "height": 12, "width": 16, "ground_truth": True, "factor": 2}]
        query = "session=t&view=1&pane=m1&image=i0&scale=2.5&top=0&left=0&height=20&width=30"
        lines = get("api/render?" + query).read().decode().splitlines()
        assert json.loads(lines[-1])["type"] == "done"
        with pytest.raises(urllib.error.HTTPError) as refused:  # another site's request (tests/unit/serve has every kind)
            get("api/render?" + query, Origin="http://evil.example")
        assert refused.value.code == 403
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in out + err, out + err
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()


def read_url(proc, timeout):
    """The URL of the line the viewer prints (flushed) when it is ready."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for line in proc.output_so_far()[0].splitlines():
            if line.startswith("LIIF viewer: "):
                return line.split()[2]
        time.sleep(0.05)
    raise AssertionError(f"no URL printed in {timeout} s; exit status {proc.poll()}; output: {proc.output_so_far()}")


@pytest.fixture(scope="module")
def serve_cfg():
    return compose("task=serve", "device=cpu")


@pytest.mark.parametrize("args, words", [
    ([], "task=serve needs checkpoint="),
    (["checkpoint={tmp}/missing.pth"], "checkpoint not found"),
    (["checkpoint={tmp}/garbage.pth"], "not a readable checkpoint"),
    (["checkpoint=[{ckpt},{tmp}/garbage.pth]"], "not a readable checkpoint"),
    (["dir={tmp}/nowhere"], "sweep folder not found"),
    (["dir={tmp}"], "has a checkpoint"),
    (["checkpoint={ckpt}", "input={tmp}/missing.png"], "input image not found"),
    (["checkpoint={ckpt}", "input={tmp}/notes.png"], "cannot read image"),
    (["checkpoint={ckpt}", "input={sweep}/photo.png", "task.downscale=1"], "downscale must be an integer >= 2"),
    (["checkpoint={ckpt}", "input={sweep}/photo.png", "task.port=99999"], "cannot listen on 127.0.0.1:99999"),
])
def test_what_a_bad_command_line_says(serve_cfg, sweep, tmp_path, args, words):
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "notes.png").write_text("hello")
    ckpt = sweep / "0_liif_torch" / "checkpoints" / "epoch-last.pth"
    status, err = run_task_with_overrides(serve_cfg, f"output_dir={tmp_path / 'run'}",
                                          *(a.format(tmp=tmp_path, ckpt=ckpt, sweep=sweep) for a in args))
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err


def test_a_taken_port_is_a_user_error(sweep):
    import socket

    from conftest import typed

    from liif.errors import LiifError
    from liif.serve.task import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cfg = typed("task=serve", f"checkpoint={sweep / '0_liif_torch' / 'checkpoints' / 'epoch-last.pth'}",
                      f"input={sweep / 'photo.png'}", f"task.port={port}", "device=cpu")
        with pytest.raises(LiifError, match=f"cannot listen on 127.0.0.1:{port}"):
            main(cfg)
