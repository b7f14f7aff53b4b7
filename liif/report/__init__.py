"""Sweep folders -> the paper's tables with our numbers beside the published ones.

`write(sweep_dirs)` reads `<dir>/*/metrics.json` (the contract every job writes last, on
failure too) and, when present, `<dir>/*/.hydra/overrides.yaml`; nothing else, and nothing
from memory, so it works the same after a basic, joblib or SLURM sweep, after a partial
failure, and on several sweeps at once (e.g. a torch sweep and a jittor sweep). It writes,
into the first folder (or `out_dir`):

- `report.md`: per paper table (metrics.json `paper.table`), rows by `paper.row` and
  framework, a column per scale (per benchmark set and scale for Table 2, per test set for
  Table 4) with three lines: ours (mean ± std over seeds), the paper's number, the difference.
  Failed, interrupted and missing jobs are listed as `FAILED: <dir> (<reason>)` lines.
- `report.csv`: one line per (run, test record), with the paper's number and the difference.
- plots: `psnr_vs_scale_table<N>.png`, `training_curves.png` (loss and validation PSNR per
  epoch) and `torch_vs_jittor.png` when both frameworks ran the same rows.

    python -m liif.report multirun/2026-01-01/10-00-00 [more dirs ...] [--out DIR] [--no-plots]
    python run.py task=report dir=multirun/2026-01-01/10-00-00
"""
import csv
import io
import os
import sys

from liif.errors import BadInput, OutputError
from liif.io.durable import write_text
from liif.report.collect import Run, collect, job_dirs, read_run  # noqa: F401  (the package's API)
from liif.report.plots import make_plots
from liif.report.tables import (CSV_FIELDS, TableView, _sort_key, framework_pairs, mean_std,  # noqa: F401
                                render_markdown, run_csv_rows)

__all__ = ["write", "collect", "read_run", "job_dirs", "Run", "TableView", "framework_pairs", "mean_std", "main", "cli"]


def write(sweep_dirs, out_dir=None, plots=True):
    """Write report.md, report.csv (and the plots) for the given sweep folder(s) into `out_dir`
    (default: the first folder). Returns the paths written."""
    if isinstance(sweep_dirs, (str, os.PathLike)):
        sweep_dirs = [sweep_dirs]
    sweep_dirs = [os.fspath(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise BadInput("no sweep folder given")
    out_dir = os.fspath(out_dir or sweep_dirs[0])
    runs = collect(sweep_dirs)
    if not runs:  # not a sweep: a report written there would only litter someone's folder
        raise BadInput(f"no runs in {', '.join(sweep_dirs)} (no job folder with a metrics.json or .hydra/): "
                       "nothing written; give a sweep folder, e.g. multirun/<date>/<time>")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"cannot write {os.path.join(out_dir, 'report.md')}: {out_dir} is a file, not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)  # before the plots: a new --out folder lost them on the first run
    except OSError as e:
        raise OutputError(f"cannot create the report's folder {out_dir}: {e.strerror}") from None
    by_table = {}
    for r in runs:
        if r.table is not None:
            by_table.setdefault(r.table, []).append(r)
    views = [TableView(t, by_table[t]) for t in sorted(by_table, key=_sort_key)]
    untagged = [r for r in runs if r.table is None]

    written = []
    plot_files = []
    if plots:
        plot_files = make_plots(views, runs, out_dir)
    md = render_markdown(sweep_dirs, runs, views, untagged, plot_files, plots)
    write_text(os.path.join(out_dir, "report.md"), _utf8(md))
    written.append(os.path.join(out_dir, "report.md"))

    rows = []
    for v in views:
        rows += v.csv_rows()
    for r in untagged:
        rows += run_csv_rows(r, None)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    write_text(os.path.join(out_dir, "report.csv"), _utf8(buf.getvalue()))
    written.append(os.path.join(out_dir, "report.csv"))
    return written + plot_files


def _csv_cell(value):
    """A text cell that a spreadsheet would take for a formula (=, +, -, @, or a tab or line break
    before one) gets a leading quote, OWASP's advice: a run name "=HYPERLINK(...)" stays text.
    Numbers are left as they are (-0.5 is a number, not a formula)."""
    if not isinstance(value, str):
        return value
    # csv quotes a cell holding the line terminator ("\n") but not a bare "\r", which readers take for a
    # new row: "x\r=cmd" would start a row with a formula
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\n") else value


def _utf8(text):
    """Text that encodes as UTF-8: a folder name of undecodable bytes (os.listdir's surrogate escapes)
    or a lone surrogate in metrics.json ("\\ud800") is written as its escape instead of failing the write."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def main(config, choices=None):
    """`python run.py task=report dir=DIR` (or dir=[DIR1,DIR2]); `config` is a liif.config.RunConfig."""
    dirs = config.dir  # given: RunConfig checks that
    dirs = [str(dirs)] if isinstance(dirs, str) else [str(d) for d in dirs]
    for d in dirs:
        if not os.path.isdir(d):
            raise BadInput(f"no such sweep folder: {d}")
    try:
        paths = write(dirs)
    except OSError as e:  # an unreadable sweep folder
        raise BadInput(f"cannot read the sweep folder: {e}") from None
    print("\n".join(paths))
    return paths


def cli(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m liif.report", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", help="sweep folders (multirun/<date>/<time>) or run folders")
    p.add_argument("--out", help="where to write report.md/.csv and the plots (default: the first folder)")
    p.add_argument("--no-plots", action="store_true", help="only report.md and report.csv")
    args = p.parse_args(argv)
    missing = [d for d in args.dirs if not os.path.isdir(d)]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    from liif.errors import LiifError
    try:
        paths = write(args.dirs, out_dir=args.out, plots=not args.no_plots)
    except LiifError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
