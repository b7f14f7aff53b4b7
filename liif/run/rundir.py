"""What a run directory holds besides Hydra's `.hydra/`: the resolved config with library
versions, `metrics.json` (the contract the report relies on) and `history.csv`.
Every file is written atomically, so an interrupted run never leaves a torn one."""
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import stat
import sys
import threading
import time

from liif import backends
from liif.errors import RunDirError
from liif.io import durable
from liif.run.recovery import holds_checkpoints


def write_json(path, obj):
    """`obj` as indented JSON (NumPy numbers and arrays as plain ones), written atomically."""
    durable.write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def versions(framework=None):
    import numpy
    import PIL
    out = {"python": platform.python_version(), "numpy": numpy.__version__, "pillow": PIL.__version__,
           "platform": platform.platform()}
    for name in backends.FRAMEWORKS:
        if name in sys.modules or name == framework:
            found = backends.version(name)
            if found is not None:
                out[name] = found
    if "hydra" in sys.modules:  # the CLI's; never imported here
        out["hydra"] = str(sys.modules["hydra"].__version__)
    return out


def save_config(config, out_dir, framework=None):
    """`config.yaml`: the fully resolved config (a plain dict) plus versions (Hydra's own copy is unresolved)."""
    import yaml
    resolved = {**config, "versions": versions(framework)}
    durable.write_text(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    return resolved


LOCK = ".running"

# The lock files this process holds open. A forked child (a data-loader worker) closes its copies
# (closing, never unlocking: the lock is shared with the parent), so a lock lives exactly as long
# as the process that took it, even if orphaned workers linger after it is killed.
_held_fds = set()


def _close_held_locks_in_child():
    for fd in _held_fds:
        os.close(fd)
    _held_fds.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


class RunLock:
    """A claimed run directory: its `.running` file, open and locked (flock) until `release()`.
    The kernel drops the lock when the process ends, however it ends (SIGKILL too), so the
    directory of a killed run is free at once; the file it leaves is not a lock by itself."""

    def __init__(self, path, fd):
        self.path, self.fd, self.pid = path, fd, os.getpid()
        _held_fds.add(fd)

    def release(self):
        """Remove the file, then unlock: a run waiting on the file sees it gone and makes a new one.
        Nothing in a forked child, which holds no copy of the lock."""
        if self.fd is None or os.getpid() != self.pid:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        finally:
            _held_fds.discard(self.fd)
            os.close(self.fd)
            self.fd = None


def claim(out_dir, resuming=False):
    """Refuse to write into a directory that holds another run: a live one (it holds the lock of
    `.running`) or a finished one (unless we resume it). Returns the RunLock to release at the end.
    The lock is the kernel's (flock), so two processes that race for the directory cannot both win."""
    lock = _lock_file(os.path.join(out_dir, LOCK), out_dir)
    try:
        if not resuming and _holds_results(out_dir):
            raise RunDirError(f"{out_dir} already holds a run; continue it with resume=true, or choose another hydra.run.dir")
        os.write(lock.fd, str(os.getpid()).encode())  # for the message of a run refused meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


def _lock_file(path, out_dir):
    """`path` opened and locked; a RunDirError naming the holder if a live process holds it."""
    while True:
        try:  # never through a link: a copied run folder must not make us truncate a file elsewhere
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
        except OSError as e:  # a folder, a link (ELOOP), an unwritable folder
            raise RunDirError(f"cannot lock {out_dir}: {path} cannot be opened as a lock file "
                              f"({e.strerror or e}); remove it or choose another hydra.run.dir") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RunDirError(f"cannot lock {out_dir}: {path} is not a regular file; remove it or "
                                  "choose another hydra.run.dir")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunDirError(f"{out_dir} is in use by another run{pid}; choose another hydra.run.dir") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            os.ftruncate(fd, 0)  # a killed run's pid
            return RunLock(path, fd)
        os.close(fd)  # its holder released it (removed, then unlocked) as we opened it: lock a new one


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _holds_results(out_dir):
    """Checkpoints, or a run that finished or was interrupted (a run that failed before
    producing anything may be run again in place)."""
    if holds_checkpoints(os.path.join(out_dir, "checkpoints")):  # a killed write's temp file is not a checkpoint
        return True
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            return json.load(f).get("status") in ("ok", "interrupted")
    except (OSError, ValueError):
        return False


def remove_hydra_only_folder(out_dir):
    """Remove `out_dir` if it holds only what Hydra makes for every process (`.hydra/`, `run.log`).
    Under torchrun/mpirun each rank is a Hydra app with its own default run directory (the name has
    microseconds in it); rank 0's is the run's, and the other ranks call this on theirs. A shared
    directory (hydra.run.dir given) is kept: rank 0 writes into it before the other ranks go on."""
    try:
        names = set(os.listdir(out_dir))
    except OSError:
        return
    if names <= {".hydra", "run.log"}:
        shutil.rmtree(out_dir, ignore_errors=True)


class RunLifecycle:
    """The life of one run directory, the same for every task that writes one:

        with RunLifecycle(out_dir, RunRecord(task="test", ...), config=resolved) as run:
            run.record.records = ...      # fill in the record as results come
        # here metrics.json exists and the directory is no longer locked, however the block ended

    On entry: the directory is created and claimed (`claim`: refused if another run holds it)
    and `config.yaml` written. On exit, on every path: `metrics.json` (`run.record`, a
    `liif.run.record.RunRecord`) with status "ok", "interrupted" (an `Interrupted` or
    KeyboardInterrupt escaped, or `run.interrupted(signum)` was called) or "failed" with the
    error, then the lock released. Exceptions are never swallowed. `owner=False` (the other
    ranks of a multi-process run) claims and writes nothing."""

    def __init__(self, out_dir, record, config=None, resuming=False, owner=True):
        self.out_dir, self.record, self.config = os.fspath(out_dir), record, config
        self.resuming, self.owner = resuming, owner
        self.started = None
        self._interrupted_by = None
        self._lock = None

    def __enter__(self):
        self.started = time.time()
        if self.owner:
            os.makedirs(self.out_dir, exist_ok=True)
            self._lock = claim(self.out_dir, resuming=self.resuming)
            try:
                if self.config is not None:
                    save_config(self.config, self.out_dir, self.record.framework)
            except BaseException:
                self._lock.release()
                raise
        return self

    def interrupted(self, signum):
        """Mark the run interrupted by `signum` though the block ends normally (a training that saved and stopped)."""
        self._interrupted_by = signum

    def __exit__(self, exc_type, exc, tb):
        record = self.record
        if exc is None:
            record.status = "ok" if self._interrupted_by is None else "interrupted"
            if self._interrupted_by is not None and record.error is None:
                record.error = f"interrupted by {signal.Signals(self._interrupted_by).name}"
        elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
            record.status, record.error = "interrupted", str(exc) or "interrupted by SIGINT"
        else:
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        if record.model is None and record.model_spec:
            record.model = record.model_spec.get("name")
        record.wall_time_s = round(time.time() - self.started, 2)
        if self.owner:
            try:
                write_json(os.path.join(self.out_dir, "metrics.json"), record.to_dict())
            finally:
                self._lock.release()
        return False


def log_to_files(logger, level, message):
    """`message` into the log files only (run.log), for what was already printed on the console."""
    record = logger.makeRecord(logger.name, level, "(liif)", 0, message, None, None)
    for handler in logging.getLogger().handlers + logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class Interrupted(Exception):
    """SIGINT, SIGTERM (or a launcher's SIGUSR2) arrived during work with no clean stopping point (a test pass)."""

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class on_signals:
    """Within it, SIGINT and SIGTERM call `handler(signum)` instead of their usual action.

    Python runs a signal handler only between bytecodes of the main thread, so during a long
    native call (a training step on Jittor can take 30 s) nothing would happen until it returns.
    `announce(signum)`, when given, is therefore called at once, from a thread woken by the
    signal's wakeup fd (once: the first signal), to tell the user the signal was received."""

    def __init__(self, handler, announce=None):
        self.handler, self.announce = handler, announce

    def __enter__(self):
        self._old, self._echo = {}, None
        for sig in stop_signals():
            try:
                self._old[sig] = signal.signal(sig, _OurHandler(self.handler))
                # restart interrupted system calls (SA_RESTART): native code does not expect EINTR
                # (Jittor's kernel-cache lock, fcntl(F_SETLKW), failed a check on it: measured)
                signal.siginterrupt(sig, False)
            except ValueError:  # not the main thread (e.g. a launcher's worker thread)
                pass
        if self.announce and self._old:
            self._echo = _SignalEcho(self.announce, tuple(self._old))
        return self

    def __exit__(self, *exc):
        if self._echo:
            self._echo.close()
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _SignalEcho:
    """A thread that calls `announce(signum)` as soon as one of `signals` arrives (the C-level
    handler writes the signal number to the wakeup fd immediately, whatever the main thread does)."""

    _END = b"\0"  # not a signal number: what close() writes to end the thread

    def __init__(self, announce, signals):
        self.announce, self.signals, self.announced = announce, signals, False
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.old_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.thread = threading.Thread(target=self._run, name="signal-echo", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            data = os.read(self.read_fd, 64)
            if not self.announced and any(b in self.signals for b in data):
                self.announced = True
                self.announce(next(b for b in data if b in self.signals))
            if not data or self._END in data:  # the scope ended
                return

    def close(self):
        signal.set_wakeup_fd(self.old_fd)
        # an explicit end, not only EOF: a process forked meanwhile (a data-loader worker) holds a copy
        # of the write end, so closing ours alone would leave the thread waiting for the join's timeout
        try:
            os.write(self.write_fd, self._END)
        except BlockingIOError:  # a full pipe (64 KB of signals): the join's timeout ends the wait
            pass
        os.close(self.write_fd)
        self.thread.join(timeout=5)
        os.close(self.read_fd)


def stop_signals():
    """SIGINT, SIGTERM, and SIGUSR2 where a launcher handles it in Python: submitit's warning that the
    SLURM time limit is near (sent `signal_delay_s` before it), on which it requeues the job. The run
    stops for it as for SIGTERM; `forward_to_launcher` then hands it on."""
    return (signal.SIGINT, signal.SIGTERM) + ((signal.SIGUSR2,) if _launchers_handler(signal.SIGUSR2) else ())


def _launchers_handler(signum):
    """The Python handler of `signum` that someone else (a launcher) installed, or None."""
    handler = signal.getsignal(signum)
    return handler if callable(handler) and not isinstance(handler, _OurHandler) else None


class _OurHandler:
    """A handler `on_signals` installed (so that a nested scope does not take it for a launcher's)."""

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signum, frame):
        self.handler(signum)


def forward_to_launcher(signum):
    """Call the launcher's own handler of `signum` (see `stop_signals`), now that the run that the signal
    stopped is saved and its metrics.json written: submitit's checkpoints the job, runs
    `scontrol requeue` and exits; the job starts again and continues in its folder
    (`liif.run.slurm.requeued`). Nothing for SIGINT, SIGTERM or a signal no launcher handles."""
    handler = _launchers_handler(signum) if signum == signal.SIGUSR2 else None
    if handler is not None:
        handler(signum, None)


def interruptible():
    """SIGINT/SIGTERM (and a launcher's SIGUSR2: `stop_signals`) raise `Interrupted`: the `finally` that writes metrics.json runs, instead
    of the process dying (SIGTERM's default) with no record of the run."""
    def raise_interrupted(signum):
        raise Interrupted(signum)
    return on_signals(raise_interrupted)
