"""Real sweeps as users type them, shrunk by profile=smoke: every job runs, the report appears."""
import json
import time

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_cli_subprocess

ABLATIONS = ["ablation_c", "ablation_d", "ablation_e", "ablation_liif", "ablation_u",
             "ablation_x2", "ablation_x3", "ablation_x4"]  # the glob's order: sorted names


def small_test_set(tmp_path):
    """The override that tests every job on two 96x96 images instead of the sample set's 240x360 photos
    (most of a smoke job's time): what the sweeps test is the jobs and their report, not the PSNR.
    96 pixels: at x12 the DIV2K protocol shaves 18 pixels a side, and SSIM needs 7 left."""
    folder = tmp_path / "test"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return f"dataset.test.0.hr={folder}"


def job_metrics(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))}


@pytest.mark.slow
def test_ablation_glob_sweep_writes_table3_beside_the_paper(tmp_path):
    sweep = tmp_path / "sweep"
    started = time.time()
    r = run_cli("-m", "experiment=ablation_*", "profile=smoke", f"hydra.sweep.dir={sweep}", small_test_set(tmp_path),
                timeout=600)
    seconds = time.time() - started
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert [m["run_name"] for m in jobs.values()] == ABLATIONS, "exactly the 8 ablation jobs, no others"
    assert all(m["status"] == "ok" and m["dataset"] == "sample" for m in jobs.values())
    assert {m["paper"]["row"] for m in jobs.values()} >= {"LIIF", "LIIF(-c)", "LIIF(-u)", "LIIF(-e)", "LIIF(-d)"}
    md = (sweep / "report.md").read_text()
    assert "## Table 3: ablations" in md and "Runs: 8 (8 ok, 0 failed or missing)" in md
    # the smoke profile tests x2 and x12: the paper's numbers at those scales sit under ours
    for row, paper in [("LIIF", "34.67 | 23.71"), ("LIIF(-c)", "34.53 | 23.72"), ("LIIF(-u)", "34.64 | 23.69"),
                       ("LIIF(-e)", "34.63 | 23.66"), ("LIIF(-d)", "34.65 | 23.64")]:
        assert f"| {row} | torch | 1 | ours | " in md
        assert f"|  |  |  | paper | {paper} |" in md
    for k in (2, 3, 4):
        assert f"| LIIF (x{k}-only) | torch | 1 | ours | " in md
    assert (sweep / "report.csv").is_file() and (sweep / "psnr_vs_scale_table3.png").is_file()
    assert (sweep / "training_curves.png").is_file()
    print(f"\n8-job smoke sweep: {seconds:.0f} s")


@pytest.mark.slow
def test_table_config_sweeps_without_dash_m(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("table=table3", "hydra.sweeper.params.experiment=ablation_e", "profile=smoke",
                f"hydra.sweep.dir={sweep}", small_test_set(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [m["run_name"] for m in job_metrics(sweep).values()] == ["ablation_e"]
    assert "| LIIF(-e) | torch | 1 | ours | " in (sweep / "report.md").read_text()


@pytest.mark.slow
def test_joblib_parallel_sweep_of_two_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[dev]'")
    sweep = tmp_path / "sweep"
    started = time.time()
    # a fresh interpreter, as a user starts it: the launcher's worker processes are the subject (in a child
    # of the CLI server the sweep ends only after about 300 s more, loky's idle-worker timeout)
    r = run_cli_subprocess("-m", "experiment=ablation_liif,ablation_c", "profile=smoke", "hydra/launcher=parallel",
                           "framework.threads=1", f"hydra.sweep.dir={sweep}", small_test_set(tmp_path),
                           timeout=600)
    seconds = time.time() - started
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert sorted(m["run_name"] for m in jobs.values()) == ["ablation_c", "ablation_liif"]
    assert all(m["status"] == "ok" for m in jobs.values())
    md = (sweep / "report.md").read_text()  # written by the parent, which saw none of the jobs in memory
    assert "Runs: 2 (2 ok, 0 failed or missing)" in md and "| LIIF(-c) | torch | 1 | ours | " in md
    print(f"\n2-job joblib smoke sweep: {seconds:.0f} s")


@pytest.mark.slow
def test_a_failing_job_still_leaves_a_report_that_lists_it(tmp_path):
    # Hydra skips on_multirun_end when a job fails: the per-job refresh must have written the report.
    # The second job trains on CelebA-HQ, whose training path is config-only: it stops at start.
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "experiment=ablation_liif", "profile=smoke", "dataset=sample,celebahq_64_128",
                f"hydra.sweep.dir={sweep}", timeout=300)
    assert r.returncode != 0
    md = (sweep / "report.md").read_text()
    assert "Runs: 2 (1 ok, 1 failed or missing)" in md
    assert f'FAILED: {sweep / "1_ablation_liif_torch"} (status "failed"' in md


@pytest.mark.slow
def test_a_sweep_without_data_prints_one_line_per_job_and_a_clean_report(tmp_path):
    sweep, data = tmp_path / "sweep", tmp_path / "nodata"
    r = run_cli("-m", "experiment=ablation_liif,ablation_c", f"paths.data_dir={data}", f"hydra.sweep.dir={sweep}",
                timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    missing = f"dataset folder not found: {data}/DIV2K/DIV2K_train_HR"
    assert [line for line in r.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {sweep / '0_ablation_liif_torch'}: {missing}", f"error: {sweep / '1_ablation_c_torch'}: {missing}"]
    assert r.stderr.count("expected layout:") == 1 and r.stderr.count("README.md, section Data") == 1
    assert r.stderr.count("No data here yet?") == 1
    assert f"python run.py -m experiment=ablation_liif,ablation_c paths.data_dir={data} profile=smoke" in r.stderr
    md = (sweep / "report.md").read_text()
    assert md.count("expected layout:") == 1 and "Runs: 2 (0 ok, 2 failed or missing)" in md
    listed = [line for line in md.splitlines() if line.startswith("- FAILED: ")]
    assert len(listed) == 4 and all(line.endswith(f"DataLayoutError: {missing})") for line in listed)  # list + table 3
