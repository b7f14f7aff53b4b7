"""benchmarks/gpu_acceptance.py, the GPU acceptance kit (issue 22): its CPU dry run runs every step on
the CPU path, and a failure planted in one step is recorded while the others still run; its runner
records a step that fails or outlives its budget and goes on."""
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"
STEPS = ["machine", "exactness", "training", "data", "inference", "ddp", "jittor"]


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_records_a_planted_failure(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path),
                        "--fail-step", "data"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 1, r.stderr[-3000:]
    record = json.loads((tmp_path / "gpu_acceptance.json").read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert list(steps) == STEPS
    data = steps.pop("data")
    assert data["status"] == "failed" and data["error"].startswith("PlantedFailure")
    assert data["result"]["workers"] and data["summary"]  # the step's work was done, and kept
    jittor = "ok" if importlib.util.find_spec("jittor") else "skipped"
    for name, step in steps.items():
        assert step["status"] == (jittor if name == "jittor" else "ok"), (name, step["error"])
    assert record["status"] == "failed: data (failed)"

    exactness = steps["exactness"]["result"]
    assert len(exactness["passed"]) >= 5 and not exactness["failed"]
    training = steps["training"]["result"]["cases"]
    assert len(training) == 12 and all(c["status"] == "ok" and c["it_per_s"] > 0 for c in training.values())
    assert {c["case"] for c in training.values()} >= {"fp32", "bf16", "channels_last", "compile"}
    assert {c["decoder"] for c in training.values()} == {"fast", "reference"}
    inference = steps["inference"]["result"]["cases"]
    assert {c["scale"] for c in inference} == {2, 4, 12}
    tiled = [c for c in inference if "tiles" in c]
    assert tiled and all(c["equal"] and c["tiles"] >= 2 for c in tiled)
    assert steps["ddp"]["result"]["equal"]

    table = (tmp_path / "gpu_acceptance.md").read_text()
    assert "| data | failed |" in table and all(f"| {name} | " in table for name in STEPS)
    assert r.stdout.startswith("# GPU acceptance: failed")  # the same table, printed
    assert sorted(os.listdir(tmp_path)) == ["gpu_acceptance.json", "gpu_acceptance.md", "logs"]


@pytest.mark.slow
def test_a_failing_or_overrunning_step_is_recorded_and_the_next_runs(kit, tmp_path, monkeypatch):
    monkeypatch.setattr(kit, "MIN_STEP_S", 0)
    monkeypatch.setattr(kit, "GRACE_S", 1)  # a child step's own deadline comes first
    children = []

    def fails(ctx, result, deadline):
        result["measured"] = 1
        raise ValueError("broken")

    def overruns(ctx, result, deadline):
        time.sleep(30)

    def child_overruns(ctx, result, deadline):
        children.append(deadline)
        kit.run_children("sleeper", [(["sleep", "30"], {})], deadline, str(tmp_path / "logs"))

    def fine(ctx, result, deadline):
        return "fine"
    steps = [kit.Step("fails", "", 5, fails), kit.Step("overruns", "", 0.3, overruns),
             kit.Step("child", "", 0.3, child_overruns), kit.Step("fine", "", 5, fine)]
    ctx = kit.Context(device="cpu", quick=True, sizes=kit.QUICK, out_dir=str(tmp_path), fail_steps=[], ddp_procs=None,
                      jittor_env={}, record={"command": "test", "device": "cpu", "quick": True, "started": "now",
                                             "status": "running"})
    start = time.monotonic()
    records = kit.run_steps(steps, ctx, start + 60)
    assert time.monotonic() - start < 15
    assert [records[s.name]["status"] for s in steps] == ["failed", "timeout", "timeout", "ok"]
    assert records["fails"]["error"] == "ValueError: broken" and records["fails"]["result"] == {"measured": 1}
    assert "over its" in records["overruns"]["error"] and "still running at its deadline" in records["child"]["error"]
    assert (tmp_path / "logs" / "sleeper.log").is_file()
    written = json.loads((tmp_path / "gpu_acceptance.json").read_text())
    assert [s["status"] for s in written["steps"]] == ["failed", "timeout", "timeout", "ok"]
    # a step is not started without the time for it
    records = kit.run_steps([kit.Step("late", "", 5, fine)], ctx, time.monotonic() - 1)
    assert records["late"]["status"] == "not run"
