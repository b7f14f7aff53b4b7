"""`python run.py task=serve ...` through the real CLI: it prints a local URL and serves the
checkpoints of the command line (or of a sweep); bad input is the usual one-line error."""
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, run_cli
from serve_helpers import photo, tiny_checkpoint

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow


def one_line_error(r, words):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr


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


def test_serves_a_sweep_on_localhost_and_stops_on_ctrl_c(sweep, tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "task=serve", f"dir={sweep}", f"input={sweep / 'photo.png'}",
                             "task.port=0", "task.downscale=2", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = read_url(proc, timeout=240)
        assert url.startswith("http://127.0.0.1:")
        info = json.load(urllib.request.urlopen(url + "api/info", timeout=30))
        assert [p["id"] for p in info["panes"]] == ["bicubic", "m0", "m1", "gt"]
        assert [(p["label"]["run"], p["label"]["framework"], p["label"]["epoch"]) for p in info["panes"][1:3]] == \
            [("0_liif_torch", "torch", 2), ("1_liif_jittor", "jittor", 5)]
        assert info["images"] == [{"id": "i0", "name": "photo.png", "height": 12, "width": 16, "ground_truth": True, "factor": 2}]
        query = "session=t&view=1&pane=m1&image=i0&scale=2.5&top=0&left=0&height=20&width=30"
        lines = urllib.request.urlopen(url + "api/render?" + query, timeout=60).read().decode().splitlines()
        assert json.loads(lines[-1])["type"] == "done"
        assert urllib.request.urlopen(url, timeout=30).status == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def read_url(proc, timeout):
    """The URL of the line the viewer prints when it is ready. Reads the pipe's bytes itself:
    `select` on a buffered reader misses lines already in the reader's buffer (the URL line often
    arrives in one read with the log lines before it)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + timeout
    pending = b""
    while time.time() < deadline:
        if selector.select(timeout=1):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk and proc.poll() is not None:
                break
            pending += chunk
            for line in pending.decode(errors="replace").splitlines():
                if line.startswith("LIIF viewer: "):
                    return line.split()[2]
    raise AssertionError(f"no URL printed in {timeout} s; exit status {proc.poll()}; output: {pending[-2000:]!r}")


def test_bad_command_lines_are_one_line_errors(sweep, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    run = f"hydra.run.dir={tmp_path / 'run'}"
    one_line_error(run_cli("task=serve", "device=cpu", run, timeout=120), "task=serve needs checkpoint=")
    one_line_error(run_cli("task=serve", f"checkpoint={garbage}", "device=cpu", run, timeout=120), "not a readable checkpoint")


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
def test_what_a_bad_command_line_says(sweep, tmp_path, args, words):
    """The same checks in process (run_task turns these LiifErrors into the one line shown above)."""
    from conftest import typed

    from liif.errors import LiifError
    from liif.serve.task import main

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "notes.png").write_text("hello")
    ckpt = sweep / "0_liif_torch" / "checkpoints" / "epoch-last.pth"
    with pytest.raises(LiifError, match=words.replace("[", r"\[")):  # from the typed config, or from the task
        main(typed("task=serve", "device=cpu", *(a.format(tmp=tmp_path, ckpt=ckpt, sweep=sweep) for a in args)))


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
