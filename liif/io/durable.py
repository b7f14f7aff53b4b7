"""How a file is written so that no crash leaves a torn one: `write_atomic`, the one writer of every
result file (checkpoints, metrics, configs, images, reports, caches), and the crash points that test it.

`write_atomic(path, write)` has `write(f)` fill a temporary `.tmp-*` file in the target's own
folder, which is then fsynced, renamed over the target (`replace`) and followed by an fsync of the
folder: after a crash the target is either the old file or the new one, never a torn one, and only
the `.tmp-*` file can be left behind (recovery removes it: liif/run/recovery.py). On every error
path, signals included, the temporary file is removed. The result gets the mode a plain `open()`
would give (0666 minus the umask; `tempfile.mkstemp` creates 0600). A failure of the machine (a
full disk, a read-only file system) is one `OutputError` line naming the file.

Fault injection: `LIIF_CRASH_AT=<point>[:<n>]` makes the process SIGKILL itself the n-th
time (default: the first) it reaches the named point, as a power cut or the OOM killer
would, with no handler, `finally` or flush running. The points:
  - `<stem>.tmp`: the temporary file of `<stem>.<ext>` is complete and fsynced, not yet
    renamed (e.g. `epoch-last.tmp`, `epoch-2.tmp`, `history.tmp`, `metrics.tmp`);
  - `<stem>`: just after the rename (e.g. `epoch-last`, `epoch-best`, `history`);
  - the ones the training loop names itself (liif/training/trainer.py): `start`, `step`, `tensorboard`.
tests/e2e/test_crash.py kills a training at each of them and checks what resume makes of it.
"""
import errno
import os
import signal
import tempfile

from liif.errors import OutputError

TEMP_PREFIX = ".tmp-"  # every temporary file of write_atomic starts with it (recovery removes them)

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


def write_atomic(path, write):
    """Write the file `path` through `write(binary_file_object)`: a temporary file in the same folder
    (made if missing), fsync, rename, fsync the folder. OSError (disk full, read-only, permission) ->
    OutputError; the temporary file never stays behind."""
    folder = os.path.dirname(os.path.abspath(path))
    ancestor = existing_ancestor(folder)
    if not os.path.isdir(ancestor):
        raise OutputError(f"cannot write {path}: {ancestor} is a file, not a folder")
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(str(path))[1], dir=folder)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, file_mode())
        replace(tmp, path)
    except OSError as e:
        raise OutputError(describe_os_error(e, path)) from None
    finally:  # also on KeyboardInterrupt and the project's Interrupted
        if tmp is not None and os.path.lexists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """`write_atomic` of a text file (UTF-8)."""
    write_atomic(path, lambda f: f.write(text.encode()))


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


def file_mode():
    """0666 minus the process umask: the mode `open(path, 'w')` would create."""
    return 0o666 & ~current_umask()


def current_umask():
    try:  # Linux >= 4.7 tells it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def describe_os_error(error, path):
    """One line for an OSError met while writing `path`."""
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return f"no space left on the device to write {path}; free some space and run again"
    if code == errno.EROFS:
        return f"cannot write {path}: the file system is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied"
    reason = error.strerror or str(error)
    return f"cannot write {path}: {reason}"


def existing_ancestor(folder):
    """`folder` itself if it exists, else its nearest existing parent."""
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder
