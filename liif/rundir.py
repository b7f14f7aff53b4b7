"""What a run directory holds besides Hydra's `.hydra/`: the resolved config with library
versions, `metrics.json` (the contract the report relies on) and `history.csv`.
Every file is written atomically, so an interrupted run never leaves a torn one."""
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time


def write_text_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


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
    for name in ("torch", "jittor", "hydra"):
        if name in sys.modules or name == framework:
            try:
                if name == "jittor":  # through its setup: a bare import builds another kernel cache
                    from liif.backends.jittor_setup import import_jittor
                    import_jittor()
                out[name] = str(__import__(name).__version__)
            except Exception:  # not installed
                pass
    return out


def save_config(cfg, out_dir, framework=None):
    """`config.yaml`: the fully resolved config plus versions (Hydra's own copy is unresolved)."""
    from omegaconf import OmegaConf
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["versions"] = versions(framework)
    write_text_atomic(os.path.join(out_dir, "config.yaml"), OmegaConf.to_yaml(resolved))
    return resolved


def write_history(path, rows):
    if not rows:
        return
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join("" if r.get(k) is None else f"{r[k]}" for k in keys) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


LOCK = ".running"


def claim(out_dir, resuming=False):
    """Refuse to write into a directory that holds another run: a finished one (unless we
    resume it) or a live one (its lock names a running pid). The lock is created with
    O_EXCL, so two processes that race for the same directory cannot both win."""
    lock = os.path.join(out_dir, LOCK)
    if os.path.exists(lock):
        pid = _read_pid(lock)
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise RuntimeError(f"{out_dir} is in use by another run (pid {pid}); choose another hydra.run.dir")
        os.remove(lock)  # stale: its process is gone
    if not resuming and _holds_results(out_dir):
        raise RuntimeError(f"{out_dir} already holds a run; continue it with resume=true, or choose another hydra.run.dir")
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))


def _holds_results(out_dir):
    """Checkpoints, or a run that finished or was interrupted (a run that failed before
    producing anything may be run again in place)."""
    if os.path.isdir(os.path.join(out_dir, "checkpoints")) and os.listdir(os.path.join(out_dir, "checkpoints")):
        return True
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            return json.load(f).get("status") in ("ok", "interrupted")
    except (OSError, ValueError):
        return False


def release(out_dir):
    lock = os.path.join(out_dir, LOCK)
    if _read_pid(lock) == os.getpid():
        os.remove(lock)


def _read_pid(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def start_run(cfg, task):
    out_dir = str(cfg.output_dir)
    os.makedirs(out_dir, exist_ok=True)
    claim(out_dir, resuming=bool(cfg.get("resume")) and task == "train")
    save_config(cfg, out_dir, cfg.framework.name)
    return out_dir, time.time()


def finish_run(cfg, out_dir, started, status, records, model_spec=None, **extra):
    """metrics.json, written last (and on failure too): the contract of the report."""
    choices = {}
    try:
        from hydra.core.hydra_config import HydraConfig
        choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # not inside a Hydra job (tests, the API)
        pass
    release(out_dir)
    write_json(os.path.join(out_dir, "metrics.json"), {
        "status": status, "task": cfg.task.name, "run_name": _safe(cfg, "run_name"),
        "model": choices.get("model") or (model_spec or {}).get("name"), "model_spec": model_spec,
        "framework": cfg.framework.name, "dataset": cfg.dataset.name, "seed": cfg.seed,
        "paper": _container(cfg.paper) if "paper" in cfg else None,
        "choices": choices, "wall_time_s": round(time.time() - started, 2), "records": records, **extra})


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during work with no clean stopping point (a test pass)."""

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class on_signals:
    """Within it, SIGINT and SIGTERM call `handler(signum)` instead of their usual action."""

    def __init__(self, handler):
        self.handler = handler

    def __enter__(self):
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, lambda signum, frame: self.handler(signum))
            except ValueError:  # not the main thread (e.g. a launcher's worker thread)
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def interruptible():
    """SIGINT/SIGTERM raise `Interrupted`: the `finally` that writes metrics.json runs, instead
    of the process dying (SIGTERM's default) with no record of the run."""
    def raise_interrupted(signum):
        raise Interrupted(signum)
    return on_signals(raise_interrupted)


def _container(node):
    from omegaconf import OmegaConf
    return OmegaConf.to_container(node)


def _safe(cfg, key):
    try:
        return cfg[key]
    except Exception:  # an interpolation that needs Hydra (run_name outside a job)
        return None
