"""The GPU acceptance kit (issue 22): everything a first GPU has to show, in one command.

    python benchmarks/gpu_acceptance.py                        # a GPU machine: all of it, under 8 minutes
    python benchmarks/gpu_acceptance.py --device cpu --quick   # the dry run on a CPU (the test suite runs it)

Writes gpu_acceptance.json (every number) and gpu_acceptance.md (the tables) to --out (default:
$OUT when set, else ./gpu-acceptance), rewritten atomically after every step, and the children's
logs under logs/. Each step has a time budget (its own, and what is left of the run's --budget-s);
a step that fails or runs out of time is recorded and the next one runs. Exit status 0 when every
step passed (or was skipped for a missing optional package, e.g. Jittor), 1 otherwise.

1. machine: GPU name, memory, driver, CUDA, cuDNN, NCCL, torch and Jittor versions, CPU cores.
2. exactness: the fixture tests against the original code's outputs (LIIF, its ablations, MetaSR,
   LTE: tests/unit/models/test_oracle.py, test_lte.py, and the training-step fixtures of
   tests/unit/training/test_step.py) run by pytest on the device (LIIF_TEST_DEVICE), TF32 off, with
   their CPU tolerances.
3. training: steps/s of EDSR-baseline-LIIF and RDN-LIIF at the paper's batch (16 x 48x48 patches,
   2304 queries each; in-memory random data) after warm-up: fp32, the reference decoder, bf16,
   channels_last, channels_last+bf16, compile (benchmarks/bench_precision.py); peak device memory;
   the projected time of the paper's 1000 epochs x 1000 iterations.
4. data: items/s of the data pipeline (sr-implicit-downsampled on DIV2K-size random images, the
   project's loader) with the paper's 4 workers and with one per core, against the step rates of 3.
5. inference: `Model.upscale` of a DIV2K-size input (678x1020) by EDSR-baseline-LIIF to x2, x4, x12:
   time and peak device memory, fp32 and bf16, and the tiled engine on budgets of 2GB and 512MB
   against untiled (fp32, TF32 off: equal up to float rounding); RDN-LIIF at x4 likewise (8GB).
6. ddp: one DistributedDataParallel step with NCCL, one process per GPU (one GPU: a one-process
   group), against the single-process step on the same global batch.
7. jittor: Jittor's build on the device, then its fixture tests there; when it does not build, the
   exact error (and the whole log in logs/jittor_build.log).

--quick: the smoke-size models (conf/profile/ sizes), tiny batches and images, a few steps and only a
few of the fixture tests; torch.compile with dynamo's 'eager' backend (graph capture without
inductor's code generation, which takes about a minute on a cold CPU). Every step runs.
"""
import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from liif.io.durable import write_text  # noqa: E402  (the project's one atomic writer)

PAPER_STEPS = 1000 * 1000  # the paper's schedule: 1000 epochs of 1000 iterations
PAPER_WORKERS = 4          # conf/train/paper.yaml: num_workers
UNTILED = "1TB"            # a budget every input fits in: one tile, the whole-input computation
MODELS = ("edsr_baseline_liif", "rdn_liif")
# profile=smoke (conf/profile/encoder/smoke_*.yaml, decoder/smoke_liif.yaml): the --quick models
SMOKE = {"edsr-baseline": {"n_resblocks": 2, "n_feats": 16}, "rdn": {"G0": 16, "RDNconfig": "T"}}
SMOKE_MLP = [16, 16, 16, 16]
FIXTURE_TESTS = ["tests/unit/models/test_oracle.py", "tests/unit/models/test_lte.py",
                 "tests/unit/training/test_step.py"]
QUICK_FIXTURE_TESTS = ["tests/unit/models/test_oracle.py::test_decoder_inputs_match_the_trace",
                       "tests/unit/models/test_lte.py::test_decoder_inputs_match_the_trace",
                       "tests/unit/training/test_step.py::test_one_adam_step_reproduces_the_original"]
QUICK_JITTOR_TESTS = ["tests/unit/models/test_oracle.py::test_decoder_inputs_match_the_trace"]


@dataclasses.dataclass(frozen=True)
class Sizes:
    batch: Tuple[int, int, int]         # training: patches, LR side, queries per patch
    train_warmup: int
    train_steps: int
    data_hr: Tuple[int, int]            # the data pipeline's random HR images (h, w)
    data_images: int                    # distinct images (the dataset repeats them)
    data_seconds: float                 # how long each worker count is measured
    infer_input: Tuple[int, int]        # (h, w) of the upscaled input
    infer_scales: Tuple[int, ...]
    infer_budgets: Tuple[str, ...]      # EDSR-baseline-LIIF's tiled runs: device-memory budgets
    rdn_infer_scale: int                # RDN-LIIF: one scale
    rdn_budget: str                     # and one budget
    fixture_tests: Tuple[str, ...]
    jittor_tests: Tuple[str, ...]


FULL = Sizes(batch=(16, 48, 2304), train_warmup=3, train_steps=10, data_hr=(1356, 2040), data_images=16,
             data_seconds=6.0, infer_input=(678, 1020), infer_scales=(4, 2, 12), infer_budgets=("2GB", "512MB"),
             rdn_infer_scale=4, rdn_budget="8GB", fixture_tests=tuple(FIXTURE_TESTS), jittor_tests=tuple(FIXTURE_TESTS))
QUICK = Sizes(batch=(2, 16, 64), train_warmup=1, train_steps=2, data_hr=(96, 96), data_images=4,
              data_seconds=0.5, infer_input=(24, 40), infer_scales=(4, 2, 12), infer_budgets=("1.25MB",),
              rdn_infer_scale=4, rdn_budget="1.25MB", fixture_tests=tuple(QUICK_FIXTURE_TESTS),
              jittor_tests=tuple(QUICK_JITTOR_TESTS))


# --- time limits ------------------------------------------------------------------------------------

class TimeUp(Exception):
    """A time limit ran out (a step's, a case's or a child process's)."""


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise TimeUp in the main thread once `seconds` have passed (SIGALRM; a call into C, such as a
    CUDA kernel, ends first). Nested: the earlier limit fires, as its own exception; the one yielded
    is this limit's, so `except TimeUp as e: if e is limit` tells them apart."""
    mine = TimeUp(f"{what}: over its {seconds:.3g} s budget")
    outer_left, outer_handler = signal.getitimer(signal.ITIMER_REAL)[0], signal.getsignal(signal.SIGALRM)
    if outer_left and outer_left <= seconds:  # the enclosing limit ends first: it stays in charge
        yield mine
        return
    start = time.monotonic()

    def fire(signum, frame):
        raise mine
    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield mine
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 0.01))


def run_children(name, commands, deadline, log_dir, env=None):
    """Run the commands (each in its own session, so that its whole process group can be killed)
    together until `deadline` (time.monotonic()); their output (stdout and stderr) goes to
    log_dir/NAME[-i].log. Returns [(exit status, output)]; TimeUp when the deadline passes first."""
    logs = [tempfile.TemporaryFile() for _ in commands]
    procs = []
    try:
        for (cmd, extra), log in zip(commands, logs):
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                          env={**(env or os.environ), **extra}, start_new_session=True))
        for proc in procs:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        raise TimeUp(f"{name}: still running at its deadline, stopped") from None
    finally:  # also on the step's own TimeUp and on Ctrl-C: no child outlives its step
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        outputs = []
        for i, log in enumerate(logs):
            log.seek(0)
            outputs.append(log.read().decode(errors="replace"))
            log.close()
            suffix = f"-{i}" if len(commands) > 1 else ""
            write_text(os.path.join(log_dir, f"{name}{suffix}.log"), outputs[-1])
    return [(proc.returncode, out) for proc, out in zip(procs, outputs)]


# --- the run ----------------------------------------------------------------------------------------

class StepFailed(Exception):
    """A step measured what it could and found something wrong (the message says what)."""


class Skip(Exception):
    """A step that does not apply here (an optional package is missing): not a failure."""


class PlantedFailure(Exception):
    """--fail-step: a failure planted in a step, to show that the run records it and goes on."""


@dataclasses.dataclass
class Step:
    name: str
    title: str
    budget_s: float
    run: Callable  # (context, result dict to fill, deadline) -> a one-line summary


@dataclasses.dataclass
class Context:
    device: str             # 'cuda' or 'cpu': the one place the device is chosen
    quick: bool
    sizes: Sizes
    out_dir: str
    fail_steps: List[str]
    ddp_procs: Optional[int]
    jittor_env: Dict[str, str]
    record: dict            # what gpu_acceptance.json holds
    abort: Optional[str] = None  # set when no later step can run (no GPU): they are recorded as not run

    @property
    def cuda(self):
        return self.device.startswith("cuda")

    def step_result(self, name):
        return next((s["result"] for s in self.record["steps"] if s["name"] == name), {})


MIN_STEP_S = 5  # a step is not started with less time left than this
GRACE_S = 10    # a step's own deadline comes first (children are stopped there); the alarm after it


def run_steps(steps, ctx, run_deadline):
    """Each step in turn, within min(its budget, what is left of the run); the files are rewritten
    before and after each. A step's exception is recorded (status failed / timeout), never raised."""
    records = {s.name: {"name": s.name, "title": s.title, "status": "pending", "budget_s": s.budget_s,
                        "seconds": None, "summary": None, "error": None, "result": {}} for s in steps}
    ctx.record["steps"] = list(records.values())
    write_results(ctx)
    for step in steps:
        rec = records[step.name]
        budget = min(step.budget_s, run_deadline - time.monotonic())
        if ctx.abort or budget < MIN_STEP_S:
            rec.update(status="not run", error=ctx.abort or f"no time left in the run's budget ({budget:.0f} s)")
            write_results(ctx)
            continue
        rec.update(status="running", budget_s=round(budget, 1))
        write_results(ctx)
        print(f"[{step.name}] {step.title} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            with time_limit(budget + GRACE_S, f"step {step.name}"):
                rec["summary"] = step.run(ctx, rec["result"], start + budget)
                if step.name in ctx.fail_steps:
                    raise PlantedFailure(f"planted by --fail-step {step.name} "
                                         "(after the step's work: its result is kept)")
            rec["status"] = "ok"
        except TimeUp as e:
            rec.update(status="timeout", error=str(e))
        except Skip as e:
            rec.update(status="skipped", error=str(e))
        except Exception as e:  # noqa: BLE001  (any failure of a step is its record, and the next step runs)
            rec.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc().splitlines()[-25:])
        except KeyboardInterrupt:
            rec.update(status="interrupted", error="Ctrl-C")
            raise
        finally:
            rec["seconds"] = round(time.monotonic() - start, 2)
            release_memory(ctx)
            write_results(ctx)
            print(f"[{step.name}] {rec['status']} in {rec['seconds']:.1f} s: {rec['summary'] or rec['error']}",
                  file=sys.stderr, flush=True)
    return records


def release_memory(ctx):
    gc.collect()
    if ctx.cuda:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def passed(rec):
    return rec["status"] in ("ok", "skipped")


# --- 1. the machine ---------------------------------------------------------------------------------

def step_machine(ctx, result, deadline):
    import torch
    result.update(python=platform.python_version(), platform=platform.platform(), torch=torch.__version__,
                  numpy=np.__version__, jittor=package_version("jittor"), liif_commit=git_commit(),
                  cpu=cpu_model(), cpu_count=os.cpu_count(), usable_cores=usable_cores(), ram_bytes=ram_bytes(),
                  loadavg_1min=os.getloadavg()[0], torch_cuda=torch.version.cuda, gpus=[])
    result["nvcc"] = first_line(command_output(["nvcc", "--version"], deadline), last=True)
    if not ctx.cuda:
        return f"CPU {result['cpu']}, {result['usable_cores']} cores, torch {torch.__version__}"
    result["nvidia_smi"] = command_output(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                           "--format=csv,noheader"], deadline)
    if not torch.cuda.is_available():
        ctx.abort = (f"PyTorch {torch.__version__} sees no CUDA GPU (a CPU build of torch, or no driver): "
                     "nothing to run on")
        raise StepFailed(ctx.abort)
    result.update(cudnn=torch.backends.cudnn.version(), nccl=nccl_version(), tf32_defaults={
        "matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32})
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        result["gpus"].append({"name": p.name, "memory_bytes": p.total_memory, "capability": f"{p.major}.{p.minor}",
                               "multiprocessors": p.multi_processor_count})
    smi = [line.split(", ") for line in (result["nvidia_smi"] or "").splitlines() if line.count(", ") == 2]
    result["driver"] = smi[0][2] if smi else None
    gpu = result["gpus"][0]
    return (f"{len(result['gpus'])} x {gpu['name']} ({gpu['memory_bytes'] / 2**30:.0f} GiB), "
            f"driver {result['driver']}, CUDA {result['torch_cuda']}, cuDNN {result['cudnn']}, "
            f"torch {torch.__version__}, jittor {result['jittor']}")


def nccl_version():
    """NCCL's version as torch reports it (a tuple in recent torch, an int before), or why there is none."""
    import torch
    try:
        version = torch.cuda.nccl.version()
    except Exception as e:  # noqa: BLE001  (informational: the ddp step finds out for itself)
        return f"unknown ({type(e).__name__}: {e})"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit():
    return first_line(command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], time.monotonic() + 10))


def command_output(cmd, deadline):
    """A command's stdout, or None when it is missing, fails or outlives the deadline."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1, min(20, deadline - time.monotonic())))
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def first_line(text, last=False):
    lines = (text or "").strip().splitlines()
    return (lines[-1] if last else lines[0]) if lines else None


def cpu_model():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def ram_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


# --- 2 and 7. the fixture tests, in pytest ----------------------------------------------------------

def fixture_tests(ctx, name, framework, tests, deadline):
    """pytest on `tests` (the framework's cases) with LIIF_TEST_DEVICE=ctx.device and TF32 off
    (NVIDIA_TF32_OVERRIDE=0 for cuBLAS and cuDNN in any framework; the tests' `device` fixture sets
    torch's flags): {'passed': [...], 'failed': {test: message}, 'skipped': {...}, 'exit_status'}."""
    junit = os.path.join(tempfile.mkdtemp(prefix="liif-acceptance-"), "junit.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
           "jittor" if framework == "jittor" else "not jittor", f"--junitxml={junit}", *tests]
    # these tests use no pytest plugin, and loading every installed one costs seconds
    env = {**os.environ, "LIIF_TEST_DEVICE": ctx.device, "NVIDIA_TF32_OVERRIDE": "0",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    [(status, output)] = run_children(name, [(cmd, ctx.jittor_env if framework == "jittor" else {})], deadline,
                                      os.path.join(ctx.out_dir, "logs"), env)
    tally = {"command": " ".join(cmd[1:]), "exit_status": status, "passed": [], "failed": {}, "skipped": {}}
    if os.path.isfile(junit):
        for case in ElementTree.parse(junit).iter("testcase"):
            test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
            if outcome is None:
                tally["passed"].append(test)
            else:
                kind = "skipped" if outcome.tag == "skipped" else "failed"
                tally[kind][test] = first_line(outcome.get("message") or outcome.text) or outcome.tag
    else:
        tally["output_tail"] = output.splitlines()[-30:]
    return tally


def judge_tests(tally, what):
    n = len(tally["passed"])
    if tally["failed"] or tally["exit_status"] != 0 or not n:
        first = next(iter(tally["failed"].items()), None)
        raise StepFailed(f"{what}: {n} passed, {len(tally['failed'])} failed (pytest exit {tally['exit_status']})"
                         + (f"; first: {first[0]}: {first[1]}" if first else ""))
    return f"{what}: {n} passed" + (f", {len(tally['skipped'])} skipped" if tally["skipped"] else "")


def step_exactness(ctx, result, deadline):
    result.update(fixture_tests(ctx, "exactness", "torch", ctx.sizes.fixture_tests, deadline))
    return judge_tests(result, f"fixture tests on {ctx.device} (torch, TF32 off)")


# --- 3. training throughput -------------------------------------------------------------------------

TRAIN_CASES = [("fp32", "fast"), ("fp32", "reference"), ("bf16", "fast"), ("channels_last", "fast"),
               ("channels_last+bf16", "fast")]


def model_spec(name, quick):
    """The preset `name` (liif/models/presets.py); --quick: its smoke size (profile=smoke)."""
    from liif.models import presets
    spec = presets.spec(name)
    if quick:
        spec["args"]["encoder_spec"]["args"].update(SMOKE[spec["args"]["encoder_spec"]["name"]])
        spec["args"]["imnet_spec"]["args"]["hidden_list"] = list(SMOKE_MLP)
    return spec


@contextlib.contextmanager
def compile_backend(quick):
    """--quick: torch.compile with dynamo's 'eager' backend (see the module's docstring)."""
    import functools
    import torch
    if not quick:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend="eager")
    try:
        yield
    finally:
        torch.compile = original


def step_training(ctx, result, deadline):
    from bench_inference import training_batch
    from bench_precision import bench_training
    n, side, q = ctx.sizes.batch
    batch = training_batch(np.random.default_rng(0), n, side, q)
    result.update(batch=[n, 3, side, side], queries_each=q, warmup=ctx.sizes.train_warmup, steps=ctx.sizes.train_steps,
                  compile_backend="eager (--quick)" if ctx.quick else "inductor", cases={})
    # the compile cases last, sharing what is left: a slow compilation costs only its own case
    plan = [(m, c, d) for m in MODELS for c, d in TRAIN_CASES] + [(m, "compile", "fast") for m in MODELS]
    failures = []
    for i, (model, case, decoder) in enumerate(plan):
        label = f"{model} {'reference decoder' if decoder == 'reference' else case}"
        left = deadline - time.monotonic()
        share = left / sum(1 for p in plan[i:] if p[1] == "compile") if case == "compile" else left
        entry = result["cases"][label] = {"model": model, "case": case, "decoder": decoder}
        if left < 1:
            entry["status"] = "not run (no time left)"
            failures.append(label)
            continue
        try:
            with time_limit(share, label) as limit, compile_backend(ctx.quick and case == "compile"):
                r = bench_training(case, ctx.device, batch, ctx.sizes.train_steps, ctx.sizes.train_warmup,
                                   spec=model_spec(model, ctx.quick), decoder=decoder)
            entry.update(r, status="ok", paper_hours=PAPER_STEPS * r["step_s"] / 3600)
        except TimeUp as e:
            if e is not limit:
                raise
            entry.update(status="timeout", error=str(e))
            failures.append(label)
        except Exception as e:  # noqa: BLE001  (one case's failure, e.g. out of memory, is its record)
            entry.update(status="failed", error=f"{type(e).__name__}: {first_line(str(e))}")
            failures.append(label)
        release_memory(ctx)
        print(f"  {label}: {entry.get('it_per_s', 0):.2f} it/s {entry['status']}", file=sys.stderr, flush=True)
    if failures:
        raise StepFailed(f"{len(failures)} of {len(plan)} cases did not finish: " + ", ".join(failures))
    best = {m: max((c["it_per_s"], label.split(" ", 1)[1]) for label, c in result["cases"].items() if c["model"] == m)
            for m in MODELS}
    return "; ".join(f"{m}: fp32 {result['cases'][f'{m} fp32']['it_per_s']:.2f} it/s, best {b[1]} {b[0]:.2f} it/s "
                     f"({PAPER_STEPS / b[0] / 3600:.0f} h for the paper's 1e6 steps)" for m, b in best.items())


# --- 4. the data pipeline ---------------------------------------------------------------------------

def step_data(ctx, result, deadline):
    from liif.data import SRImplicitDownsampled, iterate_batches
    n, side, q = ctx.sizes.batch
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, ctx.sizes.data_hr + (3,), dtype=np.uint8) for _ in range(ctx.sizes.data_images)]
    items = [images[i % len(images)] for i in range(n * 200)]  # 200 batches' worth; the measurement stops first
    dataset = SRImplicitDownsampled(items, inp_size=side, scale_min=1, scale_max=4, augment=True, sample_q=q)
    result.update(hr_image=list(ctx.sizes.data_hr), batch=n, inp_size=side, sample_q=q, workers={})
    for workers in sorted({PAPER_WORKERS, usable_cores()}):
        if deadline - time.monotonic() < ctx.sizes.data_seconds + 2:
            break
        start = time.perf_counter()
        batches = iterate_batches(dataset, n, shuffle=True, num_workers=workers)
        next(batches)  # the pool's start-up and the first batch
        first = time.perf_counter()
        count = 0
        while time.perf_counter() - first < ctx.sizes.data_seconds and count < 199:
            next(batches)
            count += 1
        end = time.perf_counter()
        batches.close()  # stops the workers
        result["workers"][str(workers)] = {"items_per_s": count * n / (end - first), "first_batch_s": first - start,
                                           "batches_timed": count}
    if not result["workers"]:
        raise StepFailed("no time left to measure")
    training = ctx.step_result("training").get("cases", {})
    rates = {label: c["it_per_s"] * n for label, c in training.items() if c.get("it_per_s")}
    result["needed_items_per_s"] = rates
    fastest = max(rates.values()) if rates else None
    best = max(w["items_per_s"] for w in result["workers"].values())
    result["keeps_up_with_fastest_step"] = None if fastest is None else best >= fastest
    summary = ", ".join(f"{w} workers {r['items_per_s']:.0f} items/s" for w, r in result["workers"].items())
    if fastest is not None:
        summary += f"; the fastest training case needs {fastest:.0f} items/s"
    return summary


# --- 5. inference -----------------------------------------------------------------------------------

@contextlib.contextmanager
def tf32(allowed):
    """TF32 for cuBLAS and cuDNN on (torch's default for convolutions) or off (float32 exactness)."""
    import torch
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def measured(ctx, fn):
    """(fn(), seconds, peak device bytes above what was allocated before; None on the CPU)."""
    import torch
    if ctx.cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()  # upscale returns the image on the host: the GPU's work is done
    seconds = time.perf_counter() - start
    return out, seconds, (torch.cuda.max_memory_allocated() - base if ctx.cuda else None)


def uint8_difference(a, b):
    """max |a - b| and the share of values that differ. Tiled equals untiled up to float rounding in
    convolutions of other extents: a value may then cross a rounding boundary (tests/unit/inference/test_tiled.py)."""
    differ = a != b
    return int(np.abs(a.astype(np.int16) - b).max()), float(differ.mean())


def equal_up_to_rounding(max_diff, share):
    return max_diff == 0 or (max_diff <= 1 and share <= 1e-3)


def step_inference(ctx, result, deadline):
    import torch
    import liif
    h, w = ctx.sizes.infer_input
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    result.update(input=[h, w], cases=[])
    plan = [("edsr_baseline_liif", scale, ctx.sizes.infer_budgets) for scale in ctx.sizes.infer_scales]
    plan.append(("rdn_liif", ctx.sizes.rdn_infer_scale, (ctx.sizes.rdn_budget,)))
    models, current, problems = {}, None, []
    for name, scale, budgets in plan:
        if deadline - time.monotonic() < 2:
            problems.append(f"{name} x{scale}: not run (no time left)")
            continue
        if name != current:
            models.clear()  # the previous model's device memory goes before the next one's
            release_memory(ctx)
            for precision in ("fp32", "bf16"):
                torch.manual_seed(0)  # the same weights in both
                models[precision] = liif.build_model(model_spec(name, ctx.quick), framework="torch", device=ctx.device,
                                                     precision=precision)
                models[precision].upscale(image[:32, :32], (64, 64), progress=False)  # warm-up: CUDA, cuDNN, allocator
            current = name
        size = (h * scale, w * scale)

        def upscale(precision, max_memory):
            return models[precision].upscale(image, size, max_memory=max_memory, progress=False)
        with tf32(False):
            untiled, secs, peak = measured(ctx, lambda: upscale("fp32", UNTILED))
            add_case(result, name, scale, size, "fp32 untiled (TF32 off)", secs, peak)
            for budget in budgets:
                tiles = models["fp32"].encode(image, max_memory=budget, progress=False).plan(1 / scale).n_tiles
                tiled, secs, peak = measured(ctx, lambda: upscale("fp32", budget))
                diff, share = uint8_difference(tiled, untiled)
                equal = equal_up_to_rounding(diff, share)
                add_case(result, name, scale, size, f"fp32 tiled, {budget} (TF32 off)", secs, peak, tiles=tiles,
                         budget=budget, max_uint8_diff_vs_untiled=diff, share_differing=share, equal=equal)
                if not equal:
                    problems.append(f"{name} x{scale}, {budget}: tiled differs from untiled "
                                    f"(max {diff}, {share:.2%} of the values)")
                tiled = None
        bf16, secs, peak = measured(ctx, lambda: upscale("bf16", UNTILED))
        add_case(result, name, scale, size, "bf16 untiled", secs, peak,
                 max_uint8_diff_vs_untiled=uint8_difference(bf16, untiled)[0])
        bf16 = untiled = None
        done = ", ".join(f"{c['case']} {c['seconds']:.2f} s" for c in result["cases"][-2 - len(budgets):])
        print(f"  {name} x{scale}: {done}", file=sys.stderr, flush=True)
    models.clear()
    if problems:
        raise StepFailed("; ".join(problems))
    x4 = [c for c in result["cases"] if c["model"] == "edsr_baseline_liif" and c["scale"] == 4]
    tiles = sorted({c["tiles"] for c in result["cases"] if "tiles" in c})
    return (f"EDSR-baseline-LIIF {h}x{w} x4: " + ", ".join(f"{c['case']} {c['seconds']:.2f} s" for c in x4)
            + f"; tiled equals untiled in every case ({', '.join(map(str, tiles))} tiles)")


def add_case(result, model, scale, size, case, seconds, peak, **extra):
    result["cases"].append({"model": model, "scale": scale, "output": list(size), "case": case, "seconds": seconds,
                            "peak_device_bytes": peak, **extra})


# --- 6. DDP -----------------------------------------------------------------------------------------

def step_ddp(ctx, result, deadline):
    import torch
    world = torch.cuda.device_count() if ctx.cuda else (ctx.ddp_procs or (1 if ctx.quick else 2))
    out = os.path.join(tempfile.mkdtemp(prefix="liif-acceptance-"), "ddp.json")
    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "ddp", "--child-out", out, "--device", ctx.device]
    cmd += ["--quick"] if ctx.quick else []
    commands = [(cmd, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world), "RANK": str(r),
                       "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": str(world)}) for r in range(world)]
    ran = run_children("ddp", commands, deadline, os.path.join(ctx.out_dir, "logs"))
    result.update(world_size=world, exit_status=[s for s, _ in ran])
    if any(s != 0 for s, _ in ran) or not os.path.isfile(out):
        failed = next((o for s, o in ran if s != 0), ran[0][1])
        result["output_tail"] = failed.splitlines()[-30:]
        raise StepFailed(f"a rank failed (exit {result['exit_status']}): {first_line(failed, last=True)}")
    result.update(json.load(open(out)))
    summary = (f"{world} process(es), {result['backend']}: loss {result['loss_ddp']:.6f} "
               f"vs {result['loss_single']:.6f} "
               f"single; weights after the step: max difference {result['max_weight_diff']:.2e}")
    if not result["equal"]:
        raise StepFailed(f"DDP differs from the single-process step: {summary}; " + "; ".join(result["mismatches"][:5]))
    return summary


def ddp_child(args):
    """One rank (RANK, WORLD_SIZE, MASTER_ADDR/PORT from the environment, as torchrun sets them): one
    DDP training step on its share of the global batch ([rank::world], as liif.data.iterate_batches
    shards), and on rank 0 the single-process step on the whole batch; rank 0 writes the comparison."""
    import torch
    import torch.distributed as dist
    import liif
    from bench_inference import training_batch
    from liif.backends import torch as T
    from liif.training.step import train_step
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    cuda = args.device.startswith("cuda")
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # an equality check
    dist.init_process_group("nccl" if cuda else "gloo")
    sizes = QUICK if args.quick else FULL
    spec = model_spec("edsr_baseline_liif", args.quick)
    n, side, q = sizes.batch
    batch = training_batch(np.random.default_rng(0), n, side, q)
    if n % world:
        raise SystemExit(f"the global batch ({n}) is not divisible by the {world} processes")

    def fresh():
        torch.manual_seed(0)
        net = liif.build_model(spec, framework="torch", device=device).net.train()
        return net, T.adam(net, 1e-4)
    net, opt = fresh()
    wrapped = T.wrap_distributed(net)  # the trainer's wrapping; it leaves a one-process run unwrapped ...
    if wrapped is net:  # ... so form the one-process group's DDP here, to run NCCL all the same
        wrapped = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local] if cuda else None)
    loss_ddp = T.all_reduce_mean(train_step(T, wrapped, opt, {k: v[rank::world] for k, v in batch.items()}))
    if rank == 0:
        single, single_opt = fresh()
        loss_single = train_step(T, single, single_opt, batch)
        # tests/unit/training/test_step.py's rule: Adam's first step moves a weight by ~lr * sign(grad); where
        # the gradient is float noise (|g| < 1e-6) the sign may differ, by at most 2 lr
        mismatches, max_diff = [], 0.0
        grads = {k: p.grad.detach().cpu().numpy() for k, p in single.named_parameters() if p.grad is not None}
        ours, theirs = T.state_dict_numpy(net), T.state_dict_numpy(single)
        for name, value in theirs.items():
            err = np.abs(ours[name] - value)
            max_diff = max(max_diff, float(err.max()))
            noisy = np.abs(grads[name]) < 1e-6 if name in grads else np.zeros(err.shape, bool)
            if (err[~noisy] > 1e-6).any() or (err[noisy] > 2e-4 + 1e-7).any():
                mismatches.append(f"{name}: max {err.max():.2e}")
        loss_ok = abs(loss_ddp - loss_single) <= 1e-5 * abs(loss_single)
        if not loss_ok:
            mismatches.insert(0, f"loss {loss_ddp} vs {loss_single}")
        write_text(args.child_out, json.dumps({
            "backend": dist.get_backend(), "device": device, "batch": [n, 3, side, side], "queries_each": q,
            "loss_ddp": loss_ddp, "loss_single": loss_single, "max_weight_diff": max_diff,
            "equal": not mismatches, "mismatches": mismatches}))
    dist.barrier()
    dist.destroy_process_group()


# --- 7. Jittor --------------------------------------------------------------------------------------

ERROR_LINE = re.compile(r"error|failed|cannot|undefined|not found", re.IGNORECASE)


NOT_INSTALLED = 3  # the build child's exit status when it finds no jittor


def step_jittor(ctx, result, deadline):
    logs = os.path.join(ctx.out_dir, "logs")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "jittor-build", "--device", ctx.device]
    build_deadline = time.monotonic() + 0.7 * (deadline - time.monotonic())  # the tests get the rest, at least
    result["jittor_env"] = ctx.jittor_env
    for attempt in (1, 2):  # Jittor exits after rebuilding its core utilities ('please rerun'): once more then
        [(status, output)] = run_children("jittor_build", [(cmd, ctx.jittor_env)], build_deadline, logs)
        if status == 0 or "run the command again" not in output or attempt == 2:
            break
    if status == NOT_INSTALLED:
        raise Skip("jittor is not installed where the Jittor children look (pip install jittor==1.3.11.0 with "
                   "numpy<2, or --jittor-env PYTHONPATH=<a folder holding it>; docs/jittor.md)")
    lines = output.splitlines()
    if status != 0:
        errors = [line for line in lines if ERROR_LINE.search(line)]
        result["build"] = {"ok": False, "exit_status": status, "error_lines": errors[:40], "last_lines": lines[-40:]}
        raise StepFailed(f"Jittor did not build on {ctx.device} (exit {status}): "
                         f"{first_line(errors[-1] if errors else output, last=True)} "
                         "(all of it: logs/jittor_build.log)")
    result["build"] = {"ok": True, **json.loads(next(line for line in reversed(lines) if line.startswith("{")))}
    result["tests"] = fixture_tests(ctx, "jittor_tests", "jittor", ctx.sizes.jittor_tests, deadline)
    built = f"jittor {result['build']['jittor']} built for {ctx.device}; "
    return built + judge_tests(result["tests"], "fixture tests")


def jittor_build_child(args):
    """Import Jittor with the project's settings (liif/backends/jittor_setup.py: on a GPU host its
    downloads off) and run a convolution and a matmul on the device: its core and first kernels compile."""
    start = time.perf_counter()
    try:
        found = importlib.util.find_spec("jittor") is not None
    except ImportError:
        found = False
    if not found:
        sys.exit(NOT_INSTALLED)
    from liif.backends import jittor_setup
    jt = jittor_setup.import_jittor()
    if args.device.startswith("cuda"):
        if not jt.has_cuda:
            raise SystemExit("jittor imported without CUDA (jt.has_cuda is false): no nvcc, or its CUDA setup "
                             "failed (above)")
        jt.flags.use_cuda = 1
    x = jt.array(np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8))
    y = jt.nn.Conv2d(3, 4, 3, padding=1)(x)
    z = (y.reshape(2, -1) @ y.reshape(2, -1).transpose()).numpy()
    assert np.isfinite(z).all()
    env = {k: os.environ.get(k) for k in ("nvcc_path", "use_cutt", "use_cutlass", "use_nccl", "use_mkl", "use_mpi",
                                          "cache_name", "conv_opt")}
    print(json.dumps({"jittor": jt.__version__, "has_cuda": bool(jt.has_cuda), "use_cuda": int(jt.flags.use_cuda),
                      "env": env, "seconds": time.perf_counter() - start}))


# --- the results ------------------------------------------------------------------------------------

STEPS = [
    Step("machine", "the machine: GPU, driver, CUDA, torch and Jittor versions", 20, step_machine),
    Step("exactness", "the oracle and training-step fixtures on the device, TF32 off", 100, step_exactness),
    Step("training", "training throughput at the paper's batch: fp32, reference decoder, bf16, channels_last, compile",
         180, step_training),
    Step("data", "the data pipeline's items/s with the machine's workers, against the step rates", 30, step_data),
    Step("inference", "upscaling a DIV2K-size input to x2, x4, x12: fp32, bf16, tiled on a budget", 120,
         step_inference),
    Step("ddp", "DDP (NCCL on CUDA), one process per GPU, against the single-process step", 60, step_ddp),
    Step("jittor", "Jittor on the device: its build, then its fixture tests", 200, step_jittor),
]


def write_results(ctx):
    ctx.record["updated"] = now()
    write_text(os.path.join(ctx.out_dir, "gpu_acceptance.json"), json.dumps(ctx.record, indent=1, default=str) + "\n")
    write_text(os.path.join(ctx.out_dir, "gpu_acceptance.md"), markdown(ctx.record))


def markdown(record):
    """The summary table, then the tables of the steps that measured something."""
    lines = [f"# GPU acceptance: {record['status']}", "",
             f"`{record['command']}`, device {record['device']}{' (--quick)' if record['quick'] else ''}, "
             f"started {record['started']}, updated {record['updated']}", "",
             "| step | status | seconds (budget) | result |", "|---|---|---|---|"]
    for s in record["steps"]:
        seconds = "" if s["seconds"] is None else f"{s['seconds']:.1f} ({s['budget_s']:.0f})"
        text = s["summary"] if s["status"] == "ok" else (s["error"] or "")
        if s["status"] not in ("ok", "pending", "running") and s["summary"]:
            text = f"{s['summary']} / {text}"
        lines.append(f"| {s['name']} | {s['status']} | {seconds} | {text.replace('|', '/')} |")
    results = {s["name"]: s["result"] for s in record["steps"]}
    cases = results.get("training", {}).get("cases")
    if cases:
        t = results["training"]
        lines += ["", f"Training, batch {t['batch']} with {t['queries_each']} queries each, median of {t['steps']} "
                  f"steps after {t['warmup']}:", "",
                  "| model | case | it/s | vs fp32 | step (ms) | first step (s) | peak device memory "
                  "| paper's 1e6 steps (h) |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, c in cases.items():
            if c.get("status") != "ok":
                lines.append(f"| {c['model']} | {label.split(' ', 1)[1]} | {c.get('status')} | | | | | |")
                continue
            fp32 = cases.get(f"{c['model']} fp32", {}).get("it_per_s")
            ratio = f"{c['it_per_s'] / fp32:.2f}x" if fp32 else ""
            lines.append(f"| {c['model']} | {label.split(' ', 1)[1]} | {c['it_per_s']:.2f} | {ratio} "
                         f"| {1000 * c['step_s']:.1f} | "
                         f"{c['first_step_s']:.1f} | {gib(c['peak_device_bytes'])} | {c['paper_hours']:.1f} |")
    data = results.get("data", {})
    if data.get("workers"):
        lines += ["", f"Data pipeline, {data['hr_image'][0]}x{data['hr_image'][1]} images, batches of {data['batch']}:",
                  "",
                  "| workers | items/s | first batch (s) |", "|---|---|---|"]
        lines += [f"| {w} | {r['items_per_s']:.1f} | {r['first_batch_s']:.2f} |" for w, r in data["workers"].items()]
        if data.get("needed_items_per_s"):
            lines += ["", "Items/s the training cases consume: " + ", ".join(
                f"{k} {v:.0f}" for k, v in data["needed_items_per_s"].items())]
    inf = results.get("inference", {})
    if inf.get("cases"):
        lines += ["", f"Inference, {inf['input'][0]}x{inf['input'][1]} input (peak: device memory above the model's):",
                  "",
                  "| model | scale | output | case | seconds | peak | tiles | max uint8 diff vs fp32 untiled |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in inf["cases"]:
            diff = c.get("max_uint8_diff_vs_untiled", "")
            if "share_differing" in c:
                diff = f"{diff} ({c['share_differing']:.4%} of values)"
            lines.append(f"| {c['model']} | x{c['scale']} | {c['output'][0]}x{c['output'][1]} | {c['case']} | "
                         f"{c['seconds']:.3f} | {gib(c['peak_device_bytes'])} | {c.get('tiles', '')} | {diff} |")
    return "\n".join(lines) + "\n"


def gib(n):
    return "" if n is None else f"{n / 2**30:.2f} GiB"


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda (default) or cpu (a dry run)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (the CPU dry run)")
    parser.add_argument("--out", default=None, help="the results' folder (default: $OUT, else ./gpu-acceptance)")
    parser.add_argument("--budget-s", type=float, default=450, help="the whole run's time budget (default 450 s)")
    parser.add_argument("--steps", nargs="+", choices=[s.name for s in STEPS], default=None,
                        help="run only these steps (e.g. a rerun of one that failed)")
    parser.add_argument("--fail-step", action="append", default=[], choices=[s.name for s in STEPS],
                        help="plant a failure in this step (after its work), to see it recorded while the rest run")
    parser.add_argument("--ddp-procs", type=int, default=None, help="DDP processes on the CPU (default 2; --quick 1)")
    parser.add_argument("--jittor-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment for Jittor's build and tests (e.g. conv_opt=1)")
    parser.add_argument("--child", choices=["ddp", "jittor-build"], help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "ddp":
        return ddp_child(args)
    if args.child == "jittor-build":
        return jittor_build_child(args)

    started = time.monotonic()
    out_dir = os.path.abspath(args.out or os.environ.get("OUT") or "gpu-acceptance")
    ctx = Context(device=args.device, quick=args.quick, sizes=QUICK if args.quick else FULL, out_dir=out_dir,
                  fail_steps=args.fail_step, ddp_procs=args.ddp_procs,
                  jittor_env=dict(kv.split("=", 1) for kv in args.jittor_env),
                  record={"command": " ".join(["python benchmarks/gpu_acceptance.py", *(sys.argv[1:] if argv is None
                                                                                           else argv)]),
                          "device": args.device, "quick": args.quick, "budget_s": args.budget_s, "started": now(),
                          "status": "running"})
    steps = [s for s in STEPS if args.steps is None or s.name in args.steps]
    try:
        records = run_steps(steps, ctx, started + args.budget_s)
    finally:
        ctx.record["seconds"] = round(time.monotonic() - started, 1)
        done = ctx.record["steps"]
        ctx.record["status"] = "passed" if all(passed(s) for s in done) else (
            "failed: " + ", ".join(f"{s['name']} ({s['status']})" for s in done if not passed(s)))
        write_results(ctx)
    print(markdown(ctx.record))
    print(f"results: {os.path.join(out_dir, 'gpu_acceptance.json')}, {os.path.join(out_dir, 'gpu_acceptance.md')} "
          f"({ctx.record['seconds']:.0f} s)", file=sys.stderr)
    return 0 if all(passed(r) for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
