import functools
import hashlib
import importlib.util
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "official_liif"  # the original code's outputs (tests/fixtures/README.md)
LTE_FIXTURES = ROOT / "tests" / "fixtures" / "official_lte"  # the LTE authors' code's outputs (same README)


@pytest.fixture(autouse=True)
def subnormal_floats_and_threads():
    """Jittor compiles its kernels with -Ofast, and loading one (a new op kind) turns flush-to-zero on
    for the whole process (gcc's crtfastmath start-up code): subnormal floats then read as 0. Each
    test starts with IEEE floats again, so none depends on which jittor tests ran before it. And
    each ends with torch's thread count as it found it (a task run in process sets framework.threads)."""
    if not importlib.util.find_spec("torch"):
        yield
        return
    import torch
    torch.set_flush_denormal(False)
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fixtures_dir():
    """The original code's reference outputs, inside the repository. Missing ones fail, never skip:
    these tests are the proof that the original checkpoints give the original outputs."""
    if not (FIXTURES / "SHA256SUMS").is_file():
        pytest.fail(f"the reference fixtures are missing: {FIXTURES} (part of the repository; see tests/fixtures/README.md)")
    return FIXTURES


@pytest.fixture(scope="session")
def lte_fixtures_dir():
    """The LTE authors' reference outputs (their inputs are LIIF's: `fixtures_dir / 'inputs.npz'`);
    missing ones fail, as `fixtures_dir`."""
    if not (LTE_FIXTURES / "SHA256SUMS").is_file():
        pytest.fail(f"the reference fixtures are missing: {LTE_FIXTURES} (part of the repository; see tests/fixtures/README.md)")
    return LTE_FIXTURES


# The framework parameter of tests run on both: the Jittor case needs Jittor (skipped, with the reason, without it)
SKIP_WITHOUT_JITTOR = pytest.mark.skipif(importlib.util.find_spec("jittor") is None, reason="jittor is not installed")
NEEDS_JITTOR = [pytest.mark.jittor, SKIP_WITHOUT_JITTOR]
FRAMEWORKS = ["torch", pytest.param("jittor", marks=NEEDS_JITTOR)]
# The same with the Jittor case in the full suite only: the fast tier compares Jittor with PyTorch on
# every model (tests/unit/backends/test_jittor.py) and PyTorch with the original code.
FRAMEWORKS_JITTOR_SLOW = ["torch", pytest.param("jittor", marks=[*NEEDS_JITTOR, pytest.mark.slow])]


def slow_case(*values):
    """A parametrized case for the full suite only (`slow`): the fast tier keeps its cheaper siblings."""
    return pytest.param(*values, marks=pytest.mark.slow)


# The device of the exactness tests against the fixtures (test_oracle.py, test_lte.py, test_step.py):
# the CPU, or another one named by LIIF_TEST_DEVICE (benchmarks/gpu_acceptance.py runs them with cuda)
TEST_DEVICE = os.environ.get("LIIF_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def device():
    """The device the fixture comparisons run on (LIIF_TEST_DEVICE, default cpu). On a GPU TF32 is
    off (cuDNN's convolutions would otherwise use it): the tolerances are float32's, as on the CPU."""
    if TEST_DEVICE.startswith("cuda"):
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return TEST_DEVICE


# The whole suite runs on pytest-xdist workers (`-n auto --dist loadgroup`, README): one per core.
def pytest_configure(config):
    # The workers are the parallelism: each computes on one thread (torch's default is one per core),
    # set before torch is imported so that the CLI's fork server and child processes inherit it.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items):
    """On xdist workers, the longest tests first (the SLURM group, one chain of minutes, then the slow
    ones) so that no worker ends with a long test while the others are idle. A stable sort: the order
    is otherwise the files' own, the same on every worker, as xdist requires."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, item.get_closest_marker("slow") is None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped for a missing fixture or data file fails instead: a fresh clone must run every
    test that compares with the original code (CPU-only, GPU-only and not-installed skips stay)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).lower()
        if "fixture" in reason and any(word in reason for word in ("missing", "not found", "no such")):
            report.outcome = "failed"
            report.longrepr = f"skipped for a missing fixture, which must not happen: {report.longrepr[2]}"


def compose(*overrides):
    """The composed run config (a DictConfig), as run.py would see it (output_dir made concrete). A
    copy of a composition cached for the session: Hydra takes a fraction of a second to compose, and
    many tests compose the same overrides (every preset, every experiment)."""
    import copy
    return copy.deepcopy(_composed(overrides))


@functools.lru_cache(maxsize=512)
def _composed(overrides):
    from liif.cli.main import compose as cli_compose
    return cli_compose(["output_dir=unused", "run_name=test", *overrides])


def typed(*overrides):
    """The composed config as the library takes it: a liif.config.RunConfig, as run.py passes it to a task."""
    from liif.cli.main import typed_config
    return typed_config(compose(*overrides))


def once_more_on_jittor_internal_error(run):
    """`run` (CLI arguments -> CompletedProcess), run a second time when the first ended in a failed
    check inside Jittor's C++ core. Jittor 1.3.11's JIT compiler has failed that way, rarely and not
    reproducibly, the first time it compiled a kernel (`Check failed: member.size() <= var_num` in
    op_compiler.cc, once in CI in a 2-rank MPI resume). It is Jittor's failure, not the behaviour under
    test; the second run is what the test judges, and a warning in pytest's summary records the first."""
    from liif.backends.jittor_setup import INTERNAL_FAILURE

    def run_again_if_needed(*args, **kwargs):
        r = run(*args, **kwargs)
        if r.returncode != 0 and INTERNAL_FAILURE in r.stderr:
            warnings.warn(f"Jittor failed internally; running once more: {r.args}\n{r.stderr[-2000:]}")
            r = run(*args, **kwargs)
        return r
    return run_again_if_needed


# What a child of the CLI server has imported before it is forked: the whole project on torch, Hydra,
# and what the tasks import when they first need it (torch._dynamo: torch's optimizers; TensorBoard's
# writer; scikit-image: SSIM and the sample photos; matplotlib: the sweep report's plots), seconds
# each. No thread is started by these imports, so forking the server is safe. A module that is not
# installed is skipped.
CLI_SERVER_PRELOAD = ["torch", "torch._dynamo", "hydra", "omegaconf", "tensorboardX", "tensorboardX.event_file_writer",
                      "tensorboardX.summary", "skimage.metrics", "skimage.data", "matplotlib.pyplot",
                      "liif.backends.torch", "liif.cli.main", "liif.cli.argv", "liif.cli.hydra_callbacks",
                      "liif.training.trainer", "liif.evaluation.evaluate", "liif.inference.demo", "liif.report",
                      "liif.serve.task", "conftest"]


def cli_server():
    """The multiprocessing context of the CLI server: an interpreter started at its first use (a few
    seconds, once per session) that imports CLI_SERVER_PRELOAD and then only forks. Its children are
    real processes (their own exit status, signals, stdout and stderr, environment and working
    directory), not pytest's children, and start in milliseconds instead of the seconds a fresh
    interpreter takes to import all that. (A test of a program's own start-up runs it with subprocess
    instead: `python -m liif.report`, torchrun, mpirun.) One per session (multiprocessing's forkserver
    is a singleton): every user preloads the same list."""
    import multiprocessing
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(CLI_SERVER_PRELOAD)
    return ctx


def _run_py_in_child(args, cwd, env, out_path, err_path, prelude):
    """In a child of the CLI server: `python run.py ARGS` as the interpreter would run it (run.py as
    __main__, its argument checks included), stdout and stderr into the given files. `prelude`
    (Python code) runs first, to make a part of the library fail the way a bug would."""
    import atexit
    import multiprocessing
    import runpy
    # multiprocessing's view of this process as in a fresh interpreter: no parent, the start method
    # `python run.py` has on Linux (a forkserver child inherits 'forkserver', which jittor's compile pool
    # would then use)
    multiprocessing.set_start_method("fork" if sys.platform.startswith("linux") else "spawn", force=True)
    multiprocessing.process._parent_process = None
    multiprocessing.current_process().name = "MainProcess"
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [str(ROOT / "run.py"), *args]
    try:
        if prelude:
            exec(prelude, {"__name__": "prelude"})
        runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
    finally:  # the interpreter's exit: threads and their exit hooks (joblib's workers), then atexit's
        import threading
        threading._shutdown()
        atexit._run_exitfuncs()


class ForkedCli:
    """`python run.py ARGS` running in a child of the CLI server; a subset of subprocess.Popen."""

    def __init__(self, args, cwd=None, env=None, prelude=""):
        import tempfile
        self.args = [sys.executable, str(ROOT / "run.py"), *args]
        self._files = [tempfile.mkstemp(prefix="liif-cli-", suffix=name) for name in (".out", ".err")]
        for fd, _ in self._files:
            os.close(fd)
        full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
        self._child = cli_server().Process(target=_run_py_in_child, args=(
            list(map(str, args)), str(cwd or ROOT), full_env, self._files[0][1], self._files[1][1], prelude))
        self._child.start()
        self.pid = self._child.pid

    @property
    def returncode(self):
        return self._child.exitcode  # -N when killed by signal N, as subprocess says

    def poll(self):
        return self.returncode

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def output_so_far(self):
        """(stdout, stderr) as the child has written them until now."""
        return tuple(Path(path).read_text(errors="replace") for _, path in self._files)

    def communicate(self, timeout=None):
        """Wait for the end (SIGKILL at `timeout`: subprocess.TimeoutExpired); returns (stdout, stderr)."""
        self._child.join(timeout)
        timed_out = self._child.exitcode is None
        if timed_out:
            self._child.kill()
            self._child.join()
        out, err = (Path(path).read_text(errors="replace") for _, path in self._files)
        for _, path in self._files:
            os.unlink(path)
        if timed_out:
            raise subprocess.TimeoutExpired(self.args, timeout, out, err)
        return out, err


@once_more_on_jittor_internal_error
def run_cli(*args, cwd=None, timeout=600, env=None, prelude=""):
    """`python run.py ARGS` in a child of the CLI server (see cli_server); returns the CompletedProcess."""
    proc = ForkedCli(args, cwd=cwd, env=env, prelude=prelude)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli_subprocess(*args, cwd=None, timeout=600, env=None):
    """`python run.py ARGS` in a fresh interpreter, for a test whose subject is what the interpreter
    does around the program (a launcher's worker pool and its shutdown)."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def sigterm_after_first_checkpoint(args, run_dir, cwd=ROOT):
    """Start `python run.py *args hydra.run.dir=run_dir` (a child of the CLI server), SIGTERM it as soon as
    its first checkpoint is on disk (training is under way, more epochs to go), and return (its exit
    code, its stderr)."""
    import signal
    import time
    proc = ForkedCli([*args, f"hydra.run.dir={run_dir}"], cwd=cwd)
    deadline = time.time() + 300
    while not (Path(run_dir) / "checkpoints" / "epoch-last.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def noise_photos(folder, low=0):
    """Three 40x40 noise images with values in [low, 255], for the multi-process tests."""
    import numpy as np
    from PIL import Image
    folder.mkdir()
    for i in range(3):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(low, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def train_twice(launch, args, run_dir, single_dir):
    """The same training run through `launch` (a multi-process launcher: CLI arguments -> a finished
    process) into `run_dir`, and as one process into `single_dir`; both must succeed. A failure's whole
    stderr (every rank's) is kept beside the run folder: the message shows only its end."""
    for run, out in ((launch, run_dir), (lambda *a: run_cli(*a, timeout=300), single_dir)):
        r = run(*args, f"hydra.run.dir={out}")
        if r.returncode != 0:
            kept = Path(out).parent / f"{Path(out).name}.stderr.txt"
            try:
                kept.write_text(r.stderr)
                where = f"whole stderr in {kept}"
            except OSError as e:  # a full disk: the failure itself is still what the test reports
                where = f"whole stderr not kept ({e})"
            pytest.fail(f"exit status {r.returncode}; {where}; its end:\n{r.stderr[-3000:]}")


def assert_same_training(run_dir, single_dir, n_epochs):
    """A multi-process run against the single process with the same global batch (their
    metrics.json): both ok, the same epoch losses (1e-5 relative), validation and test PSNR (1e-3 dB)."""
    import json
    import numpy as np
    m = [json.loads((d / "metrics.json").read_text()) for d in (run_dir, single_dir)]
    assert m[0]["status"] == m[1]["status"] == "ok"
    hist = [x["train"]["history"] for x in m]
    assert len(hist[0]) == len(hist[1]) == n_epochs
    np.testing.assert_allclose([r["loss"] for r in hist[0]], [r["loss"] for r in hist[1]], rtol=1e-5)
    np.testing.assert_allclose([r["val_psnr"] for r in hist[0]], [r["val_psnr"] for r in hist[1]], atol=1e-3)
    psnr = [[r["psnr"] for r in x["records"]] for x in m]
    assert psnr[0] and len(psnr[0]) == len(psnr[1])
    np.testing.assert_allclose(psnr[0], psnr[1], atol=1e-3)


def run_cli_inprocess(*args):
    """`python run.py ARGS` in this process (the fuzzer runs hundreds of them: no interpreter start-up,
    no torch import each time); returns (exit status, stdout, stderr). Same argv checks and rewriting
    (run.py's command_line: resume=<run dir>, misspelt keys), same Hydra, same run_task."""
    import contextlib
    import importlib.util as iu
    import io
    from hydra.core.global_hydra import GlobalHydra
    spec = iu.spec_from_file_location("liif_run_py", ROOT / "run.py")
    run_py = iu.module_from_spec(spec)
    spec.loader.exec_module(run_py)
    run_py.main.__wrapped__.__module__ = "__main__"  # Hydra finds conf/ beside the file of a __main__ task
    from liif.errors import LiifError
    try:
        argv = run_py.command_line(list(args))
    except LiifError as e:  # as run.py's __main__ prints it
        return 2, "", f"error: {e}\n"
    out, err = io.StringIO(), io.StringIO()
    logging_state = saved_logging()
    old_argv, old_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["run.py", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "0"
    GlobalHydra.instance().clear()
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_py.main()
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old_env
        GlobalHydra.instance().clear()
        restore_logging(logging_state)
    return status, out.getvalue(), err.getvalue()


def saved_logging():
    """Every logger's handlers, level and switches: Hydra configures logging for each job (the root
    logger gets a FileHandler on the job's run.log) and a process normally runs one job."""
    import logging
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    return {lg: (lg.handlers[:], lg.level, lg.disabled, lg.propagate) for lg in loggers}


def restore_logging(state):
    """Back to `state` (from saved_logging), closing the handlers added since: an in-process run must
    not leave a handler on its run.log behind, which the next test's log line would reopen after
    that folder is gone (every later test that logs then failed with FileNotFoundError)."""
    import logging
    for lg in [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]:
        handlers, level, disabled, propagate = state.get(lg, ([], logging.NOTSET, False, True))
        for h in lg.handlers:
            if h not in handlers:
                h.close()
        lg.handlers[:] = handlers
        lg.level, lg.disabled, lg.propagate = level, disabled, propagate


def run_task_with_overrides(base_cfg, *overrides):
    """liif.cli.main.run_task on `base_cfg` (composed once) with command-line `overrides` applied as Hydra
    parses them (`size=[1,2]` a list, `eval_bsize=abc` a string): the CLI's path after composition,
    fast enough for a fuzzer. Returns (exit status, stderr)."""
    import contextlib
    import io
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from liif.cli.main import run_task
    from omegaconf.errors import ValidationError
    cfg = base_cfg.copy()
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        try:
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=False)
        except ValidationError as e:  # the typed config refuses it while Hydra composes: Hydra's exit 1
            return 1, f"Error merging override {o.input_line}\n{str(e).splitlines()[0]}\n"
    err = io.StringIO()
    status = 0
    with contextlib.redirect_stderr(err):
        try:
            run_task(cfg)
        except SystemExit as e:
            status = e.code
    return status, err.getvalue()


def record_forward(module, backend):
    """Every call of `module` from now on, as (input, output) NumPy pairs in a list (returned), through
    an instance-level forward: both frameworks call it (jittor has no hooks)."""
    calls, forward = [], module.forward

    def recording(x):
        y = forward(x)
        calls.append((backend.to_numpy(x), backend.to_numpy(y)))
        return y
    module.forward = recording
    return calls


def tree_state(root):
    """Everything under `root` (type, size, content hash, mode), links and fifos not followed."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha1(f.read()).hexdigest()
            state[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), st.st_size, digest, stat.S_IMODE(st.st_mode))
    return state


def photo(path, size=(40, 40), mode="RGB", bits16=False):
    """A random image file at `path` (RGB, another PIL mode, or 16-bit grey); returns `path`."""
    rng = np.random.default_rng(len(str(path)))
    img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    if bits16:
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
    else:
        img = img.convert(mode)
    img.save(path)
    return path


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A throwaway one-node SLURM cluster for this session (tests/slurm/local_cluster.py), stopped at the end
    with nothing left running: the environment (SLURM_CONF) for SLURM's commands and for run.py on it.
    Skipped, with the reason, where it cannot start (not root; SLURM not installed: .ci/setup_slurm.sh)."""
    sys.path.insert(0, str(ROOT / "tests" / "slurm"))
    import local_cluster
    try:
        local_cluster.check_available()
    except local_cluster.ClusterUnavailable as e:
        pytest.skip(f"no local SLURM cluster: {e}")
    folder = tmp_path_factory.mktemp("slurm")
    env = local_cluster.start(folder)
    yield env
    subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=60)
    local_cluster.stop(folder)
    assert local_cluster.running(folder) == []
