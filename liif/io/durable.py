"""How a result file becomes durable, and the crash points that test it.

Every result file is written to a temporary `.tmp-*` file in its own folder, which is then
fsynced, renamed over the target and followed by an fsync of the folder: after a crash the
target is either the old file or the new one, never a torn one, and only the `.tmp-*` file
can be left behind (recovery removes it: liif/run/recovery.py).

Fault injection: `LIIF_CRASH_AT=<point>[:<n>]` makes the process SIGKILL itself the n-th
time (default: the first) it reaches the named point, as a power cut or the OOM killer
would, with no handler, `finally` or flush running. The points:
  - `<stem>.tmp`: the temporary file of `<stem>.<ext>` is complete and fsynced, not yet
    renamed (e.g. `epoch-last.tmp`, `epoch-2.tmp`, `history.tmp`, `metrics.tmp`);
  - `<stem>`: just after the rename (e.g. `epoch-last`, `epoch-best`, `history`);
  - the ones the training loop names itself (liif/training/trainer.py): `start`, `step`, `tensorboard`.
tests/test_crash.py kills a training at each of them and checks what resume makes of it.
"""
import os
import signal

_hits = {}  # crash point -> times reached in this process


def crash_point(name):
    """SIGKILL this process here if LIIF_CRASH_AT names this point and this is its n-th time."""
    wanted = os.environ.get("LIIF_CRASH_AT")
    if not wanted:
        return
    point, _, count = wanted.rpartition(":")
    if not count.isdigit():
        point, count = wanted, "1"
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


def replace(tmp, path):
    """Make the finished temporary file `tmp` the file `path`: fsync, rename, fsync the folder."""
    _fsync(tmp)
    stem = os.path.basename(path).split(".")[0]
    crash_point(f"{stem}.tmp")
    os.replace(tmp, path)
    try:
        _fsync(os.path.dirname(os.path.abspath(path)))  # the rename itself survives a power cut
    except OSError:  # a file system that cannot fsync a folder (some network ones): the rename is done
        pass
    crash_point(stem)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
