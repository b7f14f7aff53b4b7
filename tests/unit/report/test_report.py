"""The sweep report: built from `*/metrics.json` alone, failed and missing jobs listed, paper numbers beside ours."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, compose, run_task_with_overrides
from liif import report
from liif.report import paper
from liif.cli.hydra_callbacks import ReportCallback


def metrics(row, table=3, framework="torch", seed=0, status="ok", psnr=None, run_name="ablation_liif"):
    psnr = psnr or {2: 34.0, 4: 28.5}
    return {"status": status, "task": "train", "run_name": run_name, "model": "edsr_baseline_liif",
            "model_spec": {"name": "liif"}, "framework": framework, "dataset": "div2k", "seed": seed,
            "paper": {"table": table, "row": row}, "choices": {"experiment": run_name}, "wall_time_s": 100.0 + seed,
            "records": [] if status != "ok" else [
                {"dataset": "DIV2K", "scale": s, "eval_type": f"div2k-{s}", "psnr": v, "psnr_bicubic": v - 3.0,
                 "ssim": 0.9, "n_images": 100, "lr_source": "files", "seconds": 1.0} for s, v in psnr.items()],
            "train": {"epochs": 2, "epochs_done": 2 if status == "ok" else 1, "steps": 20, "best_val_psnr": 30.0,
                      "history": [{"epoch": 1, "loss": 0.1, "lr": 1e-4, "val_psnr": 29.0, "seconds": 1.0},
                                  {"epoch": 2, "loss": 0.05, "lr": 1e-4, "val_psnr": 30.0, "seconds": 1.0}]}}


def make_job(sweep, name, content=None, overrides=("experiment=ablation_liif",)):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if content is not None:
        (job / "metrics.json").write_text(json.dumps(content))
    return job


@pytest.fixture
def sweep(tmp_path):
    """Two good runs of one row (two seeds), one failed and one with no metrics.json, built in one
    folder and then copied: the report must depend on nothing but the copied files."""
    src = tmp_path / "original"
    src.mkdir()
    (src / "multirun.yaml").write_text("hydra: {}\n")
    make_job(src, "0_ablation_liif_torch", metrics("LIIF", seed=0, psnr={2: 34.60, 4: 28.90}))
    make_job(src, "1_ablation_liif_torch", metrics("LIIF", seed=1, psnr={2: 34.70, 4: 29.00}))
    make_job(src, "2_ablation_c_torch", metrics("LIIF(-c)", status="failed", run_name="ablation_c"))
    make_job(src, "3_ablation_d_torch", None, overrides=("experiment=ablation_d",))
    (src / ".submitit").mkdir()  # launcher folders are not jobs
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    shutil.rmtree(src)
    return dst


def test_report_md_lists_ours_paper_delta_and_every_problem(sweep):
    paths = report.write(str(sweep))
    assert str(sweep / "report.md") in paths and str(sweep / "report.csv") in paths
    md = (sweep / "report.md").read_text()
    assert "## Table 3: ablations" in md
    assert "Runs: 4 (2 ok, 2 failed or missing)" in md
    # two seeds -> mean ± sample std; the paper's number and the difference under it
    assert "| LIIF | torch | 2 | ours | 34.65 ± 0.07 | 28.95 ± 0.07 |" in md
    assert "|  |  |  | paper | 34.67 | 29.00 |" in md
    assert "|  |  |  | Δ | -0.02 | -0.05 |" in md
    # the failed row is shown as failed, with the paper's numbers still there
    assert "| LIIF(-c) | torch | 0/1 | ours | FAILED | FAILED |" in md
    assert "|  |  |  | paper | 34.53 | 28.97 |" in md
    assert f'FAILED: {sweep / "2_ablation_c_torch"} (status "failed"' in md
    assert f"FAILED: {sweep / '3_ablation_d_torch'} (missing metrics.json" in md
    assert "Not in these sweeps: LIIF(-u), LIIF(-e), LIIF(-d)" in md  # -d has no metrics: no tag known
    assert "| Bicubic | – | – | ours | 31.65 | 25.95 |" in md
    assert ".submitit" not in md
    assert "The paper also reports x3, x6, x12, x18, x24, x30 (not tested here)." in md


@pytest.mark.slow
def test_report_csv_has_one_line_per_record_with_the_paper_number(sweep):
    report.write(sweep)
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and {r["seed"] for r in ok} == {"0", "1"}
    x2 = next(r for r in ok if r["seed"] == "0" and r["scale"] == "2")
    assert float(x2["paper_psnr"]) == 34.67 and abs(float(x2["delta"]) - (34.60 - 34.67)) < 1e-6
    assert {r["status"] for r in rows} == {"ok", "failed", "missing"}
    assert next(r for r in rows if r["status"] == "missing")["reason"].startswith("missing metrics.json")


def test_plots_are_written_beside_the_report(sweep):
    paths = report.write(sweep)
    for name in ("psnr_vs_scale_table3.png", "training_curves.png"):
        assert str(sweep / name) in paths and (sweep / name).stat().st_size > 1000
    assert not (sweep / "torch_vs_jittor.png").exists()  # one framework only
    assert "![training_curves.png](training_curves.png)" in (sweep / "report.md").read_text()


def test_plots_go_to_a_new_out_folder_on_the_first_run(sweep, tmp_path):
    out = tmp_path / "new" / "folder"  # does not exist yet
    assert report.cli([str(sweep), "--out", str(out)]) == 0
    for name in ("psnr_vs_scale_table3.png", "training_curves.png"):
        assert (out / name).stat().st_size > 1000
    assert "![training_curves.png](training_curves.png)" in (out / "report.md").read_text()


def test_the_report_cites_the_paper_not_files_outside_the_repository(sweep):
    report.write(sweep, plots=False)
    md = (sweep / "report.md").read_text()
    assert "arxiv.org/abs/2012.09161" in md and "notes" not in md
    assert "liif/report/paper_results.yaml" in md and (ROOT / "liif" / "report" / "paper_results.yaml").is_file()


def test_a_multi_line_error_is_one_list_line_and_its_detail_once(tmp_path):
    layout = "expected layout:\n/d/DIV2K/DIV2K_train_HR/*.png   0001.png ... 0800.png"
    for i, row in enumerate(["LIIF", "LIIF(-c)"]):
        failed = metrics(row, status="failed")
        failed["error"] = f"DataLayoutError: dataset folder not found: /d/DIV2K/DIV2K_train_HR\n{layout}"
        make_job(tmp_path, f"{i}_job_torch", failed)
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert md.count("0001.png ... 0800.png") == 1 and md.count("expected layout:") == 1
    failed_section = md.split("## Failed or missing runs\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(failed_section) == 2 and all(line.startswith("- FAILED: ") and line.endswith(
        "(status \"failed\": DataLayoutError: dataset folder not found: /d/DIV2K/DIV2K_train_HR)")
        for line in failed_section)
    assert "```\n" + layout + "\n```" in md  # the detail once, as a code block after the list


@pytest.mark.slow
def test_two_frameworks_and_several_sweeps_are_merged(tmp_path):
    torch_sweep, jittor_sweep = tmp_path / "torch", tmp_path / "jittor"
    for i, row in enumerate(["RDN-LIIF", "RDN-MetaSR"]):
        make_job(torch_sweep, f"{i}_t", metrics(row, table=1, psnr={2: 34.9, 12: 23.8}))
        make_job(jittor_sweep, f"{i}_j", metrics(row, table=1, framework="jittor", psnr={2: 34.91, 12: 23.79}))
    paths = report.write([torch_sweep, jittor_sweep])
    assert str(torch_sweep / "torch_vs_jittor.png") in paths
    md = (torch_sweep / "report.md").read_text()
    assert "| RDN-LIIF | torch | 1 | ours | 34.90 | 23.80 |" in md
    assert "| RDN-LIIF | jittor | 1 | ours | 34.91 | 23.79 |" in md
    assert "|  |  |  | Δ | -0.08 | -0.10 |" in md  # jittor's RDN-LIIF: 34.91 - 34.99, 23.79 - 23.89
    assert not (jittor_sweep / "report.md").exists()
    views = [report.TableView(1, report.collect([torch_sweep, jittor_sweep]))]
    assert len(report.framework_pairs(views)) == 4  # 2 rows x 2 scales, both frameworks


def test_table2_has_a_panel_per_benchmark_set(tmp_path):
    m = metrics("RDN-LIIF", table=2, run_name="table2_rdn_liif")
    m["records"] = [{"dataset": s, "scale": k, "eval_type": f"benchmark-{k}", "psnr": 30.0, "psnr_bicubic": 27.0,
                     "ssim": 0.9, "n_images": 5, "lr_source": "files", "seconds": 1.0}
                    for s in ("Set5", "Urban100") for k in (2, 8)]
    make_job(tmp_path, "0_table2", m)
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "**Set5**" in md and "**Urban100**" in md and "**Set14**" in md
    assert "|  |  |  | paper | 38.17 | 27.14 |" in md  # Set5 x2, x8
    assert "|  |  |  | paper | 32.87 | 22.79 |" in md  # Urban100 x2, x8


def test_untagged_runs_and_a_single_run_folder(tmp_path):
    m = metrics("LIIF")
    m["paper"] = None
    make_job(tmp_path, "run", m)
    report.write(tmp_path / "run", plots=False)  # a run folder itself (outputs/...)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Runs without a paper tag" in md and "| x2 | 34.00 |" in md


def test_unreadable_metrics_is_a_failed_run_not_a_crash(tmp_path):
    job = make_job(tmp_path, "0_x", None)
    (job / "metrics.json").write_text("{not json")
    report.write(tmp_path, plots=False)
    assert "FAILED: " in (tmp_path / "report.md").read_text()
    assert "unreadable metrics.json" in (tmp_path / "report.md").read_text()


def test_paper_numbers_and_source():
    assert paper.lookup(1, "EDSR-baseline-LIIF", 30) == 20.48
    assert paper.lookup(1, "EDSR-baseline", 6) is None
    assert paper.lookup(2, "RDN-MetaSR", ("B100", 6)) == 25.90
    assert paper.lookup(3, "LIIF(-c)", 2) == 34.53
    assert paper.lookup(4, "LIIF", "CelebAHQ-32-256") == 27.74
    assert paper.lookup(3, "no such row", 2) is None and paper.lookup(9, "LIIF", 2) is None
    assert "CVPR 2021" in paper.SOURCE
    for number, spec in paper.tables().items():
        for row, values in spec["rows"].items():
            for name, v in (values.items() if isinstance(values, dict) else [(None, values)]):
                assert len(v) == len(paper.columns(spec, name)), (number, row, name)
    lte = paper.table("lte")  # another paper's table: its own source and protocol, columns per set
    assert "CVPR 2022" in lte["source"] and "max(s/4, 1)" in lte["protocol"]
    assert paper.columns(lte, "DIV2K") == [2, 3, 4, 6, 12, 18, 24, 30] and paper.columns(lte, "Urban100") == [2, 3, 4, 6, 8]


def test_callback_never_raises(tmp_path, caplog):
    from omegaconf import OmegaConf
    cb = ReportCallback()
    cb.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "does_not_exist")}}}))
    assert "could not write the report" in caplog.text
    make_job(tmp_path, "0_ok", metrics("LIIF"))
    cb.sweep_dir = None
    cb.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert (tmp_path / "report.md").is_file()


@pytest.mark.slow
def test_the_module_runs_as_a_program(sweep):
    """`python -m liif.report` in a fresh interpreter: the entry point itself (its exit status, its output)."""
    r = subprocess.run([sys.executable, "-m", "liif.report", str(sweep), "--no-plots"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(sweep / "report.md") in r.stdout


def test_cli_module_and_report_task(sweep, tmp_path, capsys):
    assert report.cli([str(sweep), "--no-plots"]) == 0  # what `python -m liif.report` runs
    assert str(sweep / "report.md") in capsys.readouterr().out
    assert report.cli([str(tmp_path / "nope")]) == 2 and "no such folder" in capsys.readouterr().err
    os.remove(sweep / "report.md")
    status, err = run_task_with_overrides(compose("task=report"), f"dir={sweep}", f"output_dir={tmp_path / 'report_run'}")
    assert status == 0, err
    assert (sweep / "report.md").is_file() and (sweep / "psnr_vs_scale_table3.png").is_file()
    status, err = run_task_with_overrides(compose("task=report"), f"output_dir={tmp_path / 'report_run2'}")
    assert status == 2 and "task=report needs dir=" in err


def lte_metrics(row, clip=4, framework="torch", seed=0, run_name="lte_rdn"):
    """A run of the LTE table: DIV2K x2 and x12, Set5 x8, each record with its cell protocol."""
    m = metrics(row, table="lte", framework=framework, seed=seed, run_name=run_name)
    m["model_spec"] = {"name": "lte"}
    m["records"] = [{"dataset": ds, "scale": k, "eval_type": f"{proto}-{k}", "psnr": 30.0 + k / 10, "psnr_bicubic": 27.0,
                     "ssim": 0.9, "n_images": 5, "lr_source": "files", "seconds": 1.0, "cell_clip": clip}
                    for ds, proto, k in (("DIV2K", "div2k", 2), ("DIV2K", "div2k", 12), ("Set5", "benchmark", 8))]
    return m


def test_lte_table_shows_its_rows_with_the_cell_protocol(tmp_path):
    """LTE's rows in one table (a panel per test set: DIV2K x2-x30, the benchmarks x2-x8), the cell
    protocol of our numbers beside them, the published numbers' source and protocol, and empty
    cells where no number is published."""
    make_job(tmp_path, "0_lte_edsr_baseline_torch", lte_metrics("EDSR-baseline-LTE", run_name="lte_edsr_baseline"))
    make_job(tmp_path, "1_lte_rdn_torch", lte_metrics("RDN-LTE"))
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "## LTE (Lee & Jin, CVPR 2022)" in md and "Published numbers: Lee & Jin" in md
    assert "Their test protocol: LTE's test.py" in md
    for ds in ("DIV2K", "Set5", "Set14", "B100", "Urban100"):
        assert f"**{ds}**" in md
    assert "| row | framework | cell | runs |  | x2 | x12 |" in md  # DIV2K: the scales we tested
    assert "| EDSR-baseline-LTE | torch | x4 | 1 | ours | 30.20 | 31.20 |" in md
    assert "| RDN-LTE | torch | x4 | 1 | ours | 30.20 | 31.20 |" in md
    assert "|  |  |  |  | paper | – | – |" in md  # nothing published entered yet: empty cells, same columns
    assert "The paper also reports x3, x4, x6, x18, x24, x30 (not tested here)." in md  # DIV2K's columns
    assert "The paper also reports x2, x3, x4, x6 (not tested here)." in md  # Set5's
    # a panel we have no result for shows the published columns
    set14 = md.split("**Set14**")[1].split("**B100**")[0]
    assert "| row | framework | cell | runs |  | x2 | x3 | x4 | x6 | x8 |" in set14
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert {(r["table"], r["row"], r["cell_clip"]) for r in rows} == {("lte", "EDSR-baseline-LTE", "4"), ("lte", "RDN-LTE", "4")}


def test_numbers_of_different_cell_protocols_are_never_averaged(tmp_path):
    """The same row tested with LTE's protocol (seed 0) and with LIIF's (seed 1, test.cell_clip=false):
    two lines, each with its protocol, not one mean; a LIIF table gets the column once a run clips."""
    make_job(tmp_path, "0_lte_rdn_torch", lte_metrics("RDN-LTE", clip=4, seed=0))
    no_clip = lte_metrics("RDN-LTE", clip=None, seed=1)
    for rec in no_clip["records"]:
        rec["psnr"] -= 1
    make_job(tmp_path, "1_lte_rdn_torch", no_clip)
    clipped_liif = metrics("LIIF", psnr={2: 34.0, 12: 23.0})
    for rec in clipped_liif["records"]:
        rec["cell_clip"] = 4
    make_job(tmp_path, "2_ablation_liif_torch", clipped_liif)
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "| RDN-LTE | torch | x4 | 1 | ours | 30.20 | 31.20 |" in md
    assert "| RDN-LTE | torch | none | 1 | ours | 29.20 | 30.20 |" in md
    assert "| LIIF | torch | x4 | 1 | ours | 34.00 | 23.00 |" in md
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert sorted({r["cell_clip"] for r in rows}) == ["4", "none"]


def test_liif_tables_keep_their_layout_without_a_clip(sweep):
    report.write(str(sweep), plots=False)
    md = (sweep / "report.md").read_text()
    assert "| row | framework | runs |" in md and "| cell |" not in md
