"""Environment defaults for Jittor 1.3.11, applied before the first `import jittor`.

Jittor reads its switches from environment variables when it is imported, and several
defaults either download things from the internet or fail on machines like ours (see
docs/jittor.md). `configure()` fills in safe defaults with `os.environ.setdefault`, so
anything the user has set already wins. `import_jittor()` configures, then imports
jittor with its import-time log lines silenced and turns logging back on afterwards
(`log_silent` also mutes errors, so it must not stay on).

MPI (multi-process training, `mpirun -np N python run.py framework=jittor ...`): `use_mpi`
defaults to on under mpirun, where Jittor needs it, and to off elsewhere. Like `log_silent`,
our default lives in the environment during the import only, so that a child process (which
may itself be an mpirun) decides for itself.

This module does not import jittor itself; importing it is cheap.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from liif.errors import FrameworkError

# The folder name jittor 1.3.11 checks before downloading oneDNN 2.2 (compile_extern.install_mkl);
# .ci/setup_jittor.sh links Debian's libdnnl (2.x API) there.
ONEDNN_DIRNAME = "dnnl_lnx_2.2.0_cpu_gomp"

_GPU_FLAGS = ("use_cutt", "use_cutlass", "use_nccl")  # each downloads its library when on and missing


def jittor_home():
    """The folder jittor puts `.cache/jittor` under: $JITTOR_HOME, else the one it remembered, else ~."""
    if os.environ.get("JITTOR_HOME"):
        return os.path.abspath(os.environ["JITTOR_HOME"])
    config = Path.home() / ".cache" / "jittor" / "config.json"  # jittor persists JITTOR_HOME here
    try:
        remembered = json.loads(config.read_text()).get("JITTOR_HOME")
    except (OSError, ValueError, AttributeError):
        remembered = None
    return os.path.abspath(remembered or str(Path.home()))


def onednn_dir():
    return os.path.join(jittor_home(), ".cache", "jittor", "mkl", ONEDNN_DIRNAME)


def has_onednn():
    return os.path.isfile(os.path.join(onednn_dir(), "lib", "libmkldnn.so"))


def has_gpu():
    """True when an NVIDIA driver answers (`nvidia-smi` exists and succeeds) and a CUDA compiler exists."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        ok = subprocess.run([smi, "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    # without nvcc jittor would download a CUDA toolkit; treat that host as CPU-only
    return ok and (shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc"))


def under_mpirun(environ=None):
    """True in a process started by OpenMPI's mpirun (the test Jittor itself uses for `jt.in_mpi`)."""
    return "OMPI_COMM_WORLD_SIZE" in (os.environ if environ is None else environ)


def configure(environ=None):
    """Fill in jittor's environment defaults (never overriding a value that is already set).

    Returns the dict of variables this call set.
    """
    env = os.environ if environ is None else environ
    wanted = {"cache_name": "default",    # else the cache is named after the git branch of jittor's folder
              "FIX_TORCH_ERROR": "0",      # else `import jittor` also imports torch
              "use_mkl": "1" if has_onednn() else "0",  # 1 without the folder = download oneDNN
              # MPI only under mpirun: there Jittor needs its MPI ops (the import fails without them);
              # elsewhere they would be built and loaded at every import wherever mpicc exists
              "use_mpi": "1" if under_mpirun(env) else "0",
              # Jittor's parallel op compiler (16 threads generating kernel sources) is not thread-safe:
              # seen here as a segfault in VarRelayManager::get_relay_src (then a hang: its exit handler
              # waits for the crashed thread) and as "Check failed: member.size() <= var_num"
              "use_parallel_op_compiler": "0"}
    if "nvcc_path" not in env and not has_gpu():
        wanted["nvcc_path"] = ""          # set and empty: no CUDA build (unset is not the same)
    if env.get("nvcc_path", wanted.get("nvcc_path")) != "":
        for flag in _GPU_FLAGS:
            wanted[flag] = "0"
    done = {}
    for key, value in wanted.items():
        if key not in env:
            env[key] = value
            done[key] = value
    return done


class JittorRerunError(FrameworkError):
    pass


def check_mpi(environ=None):
    """Under mpirun, Jittor's import needs its MPI ops (else it fails with an AttributeError on
    None): raise a clear error when they are switched off or cannot be built."""
    env = os.environ if environ is None else environ
    if not under_mpirun(env):
        return
    if env.get("use_mpi", "1") != "1":
        raise FrameworkError(f"launched by mpirun, but use_mpi={env['use_mpi']}: Jittor needs its MPI ops under "
                           "mpirun; unset use_mpi (or run without mpirun)")
    if not (env.get("mpicc_path") or shutil.which("mpicc")):
        raise FrameworkError("launched by mpirun, but there is no mpicc to build Jittor's MPI ops with: "
                           "apt-get install libopenmpi-dev (bash .ci/setup_jittor.sh does)")


# How Jittor ends the message of an internal failure: a failed check inside its C++ core, such as
# "[f op_compiler.cc:832] Check failed: member.size() <= var_num  Something wrong... Could you please
# report this issue?" (seen rarely while it compiles kernels; docs/jittor.md). Defined here, where
# jittor is not imported: the test suite reads it without importing jittor.
INTERNAL_FAILURE = "Could you please report this issue"


def is_internal_failure(error):
    """True if `error` is one of Jittor's internal failures (not the run's input, nor a bug of ours)."""
    return INTERNAL_FAILURE in str(error)


def import_jittor():
    """configure(), then `import jittor` quietly; returns the module."""
    if "jittor" in sys.modules:
        return sys.modules["jittor"]
    ours = configure()
    check_mpi()
    user_silent = os.environ.get("log_silent")
    if user_silent is None:
        os.environ["log_silent"] = "1"  # mutes the ~10 '[i ...]' lines of every import
    import random

    import numpy as np
    # `import jittor` reseeds Python's and numpy's global RNGs from the clock; undo that
    rng_states = random.getstate(), np.random.get_state()
    handlers = _python_signal_handlers()
    try:
        _compile_workers_ignore_sigint()
        import jittor
    except SystemExit as e:
        # jittor exits (status 0, silently under log_silent) after rebuilding its core
        # utilities, e.g. when the cache was copied or moved; the next run works.
        sys.modules.pop("jittor", None)
        raise JittorRerunError(
            "jittor rebuilt its core utilities during import ('jit_utils updated, please rerun your "
            f"command', exit status {e.code}); run the command again") from None
    finally:
        if user_silent is None:
            os.environ.pop("log_silent", None)  # do not leak into child processes
        if "use_mpi" in ours:  # read at import only; a child may be an mpirun, which needs it on
            os.environ.pop("use_mpi", None)
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        _restore_signal_handlers(handlers)
    if user_silent is None:
        import jittor_utils
        jittor.flags.log_silent = 0
        jittor_utils.LOG.log_silent = 0
    return jittor


# Jittor's import installs C handlers for SIGINT ("Caught SIGINT, quick exit": Ctrl-C would kill a
# training without its checkpoint) and SIGCHLD (a child killed by a signal -> "Caught SIGCHLD. Maybe
# out of memory ... quick exit"). Its kernel-compile pool (7 processes here, alive for the whole
# run) is in the terminal's process group, so Ctrl-C killed those children and the SIGCHLD handler
# then ended the run at once, red message, no checkpoint (measured). We keep Python's handlers:
# Ctrl-C is the program's to handle (the trainer stops after the step and saves), and the compile
# workers ignore SIGINT (they are Jittor's, not the user's to stop).
WATCHED_SIGNALS = ("SIGINT", "SIGCHLD")


def _python_signal_handlers():
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for name in WATCHED_SIGNALS:
            handler = signal.getsignal(getattr(signal, name))
            if handler is not None:  # None: set outside Python, not ours to restore
                handlers[name] = handler
    return handlers


def _restore_signal_handlers(handlers):
    for name, handler in handlers.items():
        signal.signal(getattr(signal, name), handler)


def _compile_workers_ignore_sigint():
    import jittor_utils
    original = jittor_utils.pool_initializer
    if getattr(original, "ignores_sigint", False):
        return

    def initializer():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        original()

    initializer.ignores_sigint = True
    jittor_utils.pool_initializer = initializer  # read when run_cmds creates its Pool
