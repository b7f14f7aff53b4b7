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
import json
import logging
import math
import os
import sys
import time

from liif import paper
from liif.rundir import write_text_atomic

log = logging.getLogger(__name__)

CSV_FIELDS = ["run_dir", "status", "reason", "table", "row", "framework", "seed", "run_name", "model", "dataset",
              "scale", "eval_type", "psnr", "psnr_bicubic", "ssim", "n_images", "lr_source", "paper_psnr",
              "delta", "wall_time_s"]


# ---- reading ------------------------------------------------------------------------------
class Run:
    """One job folder: its metrics.json (or why there is none) and its Hydra overrides."""

    def __init__(self, path, metrics=None, reason=None, overrides=None):
        self.path, self.metrics, self.reason, self.overrides = path, metrics or {}, reason, overrides or []
        m = self.metrics
        self.status = m.get("status") if metrics is not None else "missing"
        tag = m.get("paper") or {}
        self.table = _table_key(tag.get("table"))
        self.row = tag.get("row")
        self.framework = m.get("framework") or "?"
        self.seed = m.get("seed")
        self.records = [r for r in (m.get("records") or []) if isinstance(r, dict)]
        self.history = ((m.get("train") or {}).get("history")) or []
        if self.status not in ("ok", "missing") and self.reason is None:
            self.reason = f'status "{self.status}"'
            if m.get("error"):
                self.reason += f": {m['error']}"
            elif self.status == "interrupted":
                self.reason += f": resumable, continue with resume={path}"
            else:
                self.reason += ": see run.log and the sweep's console output"

    @property
    def ok(self):
        return self.status == "ok"

    def psnr(self):
        """{(dataset, scale): psnr} of this run's test records."""
        return {(r.get("dataset"), _scale(r.get("scale"))): r.get("psnr") for r in self.records}

    def bicubic(self):
        return {(r.get("dataset"), _scale(r.get("scale"))): r.get("psnr_bicubic") for r in self.records}


def _table_key(x):
    if x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return str(x)


def _scale(s):
    try:
        return int(s) if float(s) == int(float(s)) else float(s)
    except (TypeError, ValueError):
        return s


def job_dirs(sweep_dir):
    """The job folders of a sweep: subfolders with a metrics.json or a .hydra/ (hidden ones and
    plain folders skipped). A folder that is itself a run (a single `outputs/...` run) counts too."""
    if os.path.isfile(os.path.join(sweep_dir, "metrics.json")):
        return [sweep_dir]
    out = []
    for name in sorted(os.listdir(sweep_dir), key=_natural):
        path = os.path.join(sweep_dir, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        if os.path.isfile(os.path.join(path, "metrics.json")) or os.path.isdir(os.path.join(path, ".hydra")):
            out.append(path)
    return out


def _natural(name):
    head = name.split("_", 1)[0]
    return (0, int(head), name) if head.isdigit() else (1, 0, name)


def read_run(path):
    overrides = _read_overrides(os.path.join(path, ".hydra", "overrides.yaml"))
    metrics_path = os.path.join(path, "metrics.json")
    if not os.path.isfile(metrics_path):
        return Run(path, None, "missing metrics.json: still running, killed, or stopped before the job started",
                   overrides)
    try:
        with open(metrics_path) as f:
            metrics = json.load(f)
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return Run(path, {"status": "unreadable"}, f"unreadable metrics.json: {e}", overrides)
    return Run(path, metrics, None, overrides)


def _read_overrides(path):
    if not os.path.isfile(path):
        return []
    try:
        import yaml
        with open(path) as f:
            data = yaml.safe_load(f)
        return [str(x) for x in data] if isinstance(data, list) else []
    except Exception:  # an optional nicety: never fail the report for it
        return []


def collect(sweep_dirs):
    runs = []
    for d in sweep_dirs:
        if not os.path.isdir(d):
            raise FileNotFoundError(f"no such sweep folder: {d}")
        runs.extend(read_run(p) for p in job_dirs(d))
    return runs


# ---- statistics ---------------------------------------------------------------------------
def mean_std(values):
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None, None, 0
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None, 1
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, std, len(values)


def fmt_ours(values, n_runs):
    mean, std, n = mean_std(values)
    if mean is None:
        return "–"
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    if n_runs > 1 and n < n_runs:
        text += f" (n={n})"
    return text


def fmt_num(x, signed=False):
    if x is None:
        return "–"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


# ---- one paper table ----------------------------------------------------------------------
class TableView:
    """Our runs of one paper table, laid out as panels of (row x column) cells."""

    def __init__(self, number, runs):
        self.number, self.runs = number, runs
        self.spec = paper.table(number) or {"title": f"Table {number}", "key": "scale", "columns": [], "rows": {}}
        self.key = self.spec["key"]
        self.ok_runs = [r for r in runs if r.ok]
        self.groups = {}  # (row, framework) -> [runs], paper order first
        for r in sorted(runs, key=lambda r: (self._row_order(r.row), _framework_order(r.framework), str(r.seed))):
            self.groups.setdefault((r.row, r.framework), []).append(r)

    def _row_order(self, row):
        names = list(self.spec["rows"])
        return (names.index(row), "") if row in names else (len(names), str(row))

    def datasets(self):
        seen = []
        for r in self.ok_runs:
            for rec in r.records:
                if rec.get("dataset") not in seen:
                    seen.append(rec.get("dataset"))
        return seen

    def panels(self):
        """[(title, [(label, dataset, scale, paper_column)])]; dataset/scale None = any.
        Columns are the scales we tested (the paper's when we have no result yet)."""
        ours = {}
        for r in self.ok_runs:
            for (ds, s) in r.psnr():
                ours.setdefault(ds, set()).add(s)
        if self.key == "scale":
            ref = self.spec.get("dataset")
            names = self.datasets() or [ref]
            out = []
            for ds in names:
                scales = sorted(ours.get(ds) or self.spec["columns"], key=_sort_key)
                title = f"ours on {ds}" + ("" if ds == ref or ref is None else f", the paper on {ref}")
                out.append((title, [(f"x{s}", ds, s, s) for s in scales]))
            return out
        if self.key == "set_scale":
            sets = list(self.spec.get("sets", []))
            sets += [ds for ds in self.datasets() if ds not in sets]
            out = []
            for ds in sets:
                scales = sorted(ours.get(ds) or self.spec["columns"], key=_sort_key)
                paper_col = (lambda s, ds=ds: (ds, s)) if ds in self.spec.get("sets", []) else (lambda s: None)
                out.append((ds, [(f"x{s}", ds, s, paper_col(s)) for s in scales]))
            return out
        # key == "dataset": a column per test set (any scale), ours-only sets per scale
        cols = [(str(c), c, None, c) for c in self.spec["columns"]]
        for ds in self.datasets():
            if ds not in self.spec["columns"]:
                cols += [(f"{ds} x{s}", ds, s, None) for s in sorted(ours.get(ds, ()), key=_sort_key)]
        return [("PSNR (dB)", cols)]

    def values(self, runs, dataset, scale, what="psnr"):
        out = []
        for r in runs:
            if not r.ok:
                continue
            table = r.psnr() if what == "psnr" else r.bicubic()
            hits = [v for (ds, s), v in table.items() if (dataset is None or ds == dataset)
                    and (scale is None or s == scale)]
            if hits:
                out.append(sum(hits) / len(hits))
        return out

    def paper_value(self, row, column):
        return None if column is None else paper.lookup(self.number, row, column)

    def markdown(self):
        lines = [f"## {self.spec['title']}", ""]
        for title, cols in self.panels():
            lines += [f"**{title}**", ""]
            head = ["row", "framework", "runs", ""] + [c[0] for c in cols]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for (row, fw), runs in self.groups.items():
                n_ok = sum(r.ok for r in runs)
                runs_cell = f"{n_ok}/{len(runs)}" if n_ok != len(runs) else str(n_ok)
                if n_ok:
                    ours = [fmt_ours(self.values(runs, ds, s), n_ok) for _, ds, s, _ in cols]
                else:
                    ours = ["FAILED"] * len(cols)
                paper_vals = [self.paper_value(row, pc) for *_, pc in cols]
                deltas = []
                for (_, ds, s, _), p in zip(cols, paper_vals):
                    m = mean_std(self.values(runs, ds, s))[0]
                    deltas.append(None if m is None or p is None else m - p)
                lines.append("| " + " | ".join([str(row), fw, runs_cell, "ours"] + ours) + " |")
                lines.append("| " + " | ".join(["", "", "", "paper"] + [fmt_num(p) for p in paper_vals]) + " |")
                lines.append("| " + " | ".join(["", "", "", "Δ"] + [fmt_num(d, True) for d in deltas]) + " |")
            if self.ok_runs:  # the bicubic floor, measured on the same test images
                bic = [fmt_num(mean_std(self.values(self.ok_runs, ds, s, "bicubic"))[0]) for _, ds, s, _ in cols]
                paper_bic = [self.paper_value("Bicubic", pc) for *_, pc in cols]
                lines.append("| " + " | ".join(["Bicubic", "–", "–", "ours"] + bic) + " |")
                if any(p is not None for p in paper_bic):
                    lines.append("| " + " | ".join(["", "", "", "paper"] + [fmt_num(p) for p in paper_bic]) + " |")
            tested = {pc[1] if isinstance(pc, tuple) else pc for *_, pc in cols if pc is not None}
            untested = [c for c in self.spec["columns"] if c not in tested]
            if self.ok_runs and tested and untested:
                lines += ["", "The paper also reports " + ", ".join(f"x{c}" if isinstance(c, int) else str(c)
                                                                    for c in untested) + " (not tested here)."]
            lines.append("")
        ran = {row for row, _ in self.groups}
        not_run = [r for r in self.spec["rows"] if r not in ran and r != "Bicubic"]
        if not_run:
            lines += ["Not in these sweeps: " + ", ".join(not_run) + ".", ""]
        problems = [r for r in self.runs if not r.ok]
        for r in problems:
            lines.append(f"- FAILED: {r.path} ({r.reason})")
        if problems:
            lines.append("")
        return lines

    def csv_rows(self):
        rows = []
        for r in self.runs:
            rows += run_csv_rows(r, self.number, lambda rec, r=r: self._paper_for(r.row, rec))
        return rows

    def _paper_for(self, row, rec):
        ds, s = rec.get("dataset"), _scale(rec.get("scale"))
        if self.key == "scale":
            return paper.lookup(self.number, row, s)
        if self.key == "set_scale":
            return paper.lookup(self.number, row, (ds, s))
        return paper.lookup(self.number, row, ds)


def _framework_order(name):
    order = ["torch", "jittor"]
    return (order.index(name), "") if name in order else (len(order), str(name))


def _sort_key(x):
    return (0, float(x), "") if isinstance(x, (int, float)) else (1, 0.0, str(x))


def run_csv_rows(run, table, paper_for=lambda rec: None):
    m = run.metrics
    base = {"run_dir": run.path, "status": run.status, "reason": run.reason or "", "table": "" if table is None else table,
            "row": run.row or "", "framework": run.framework, "seed": "" if run.seed is None else run.seed,
            "run_name": m.get("run_name") or "", "model": m.get("model") or "", "wall_time_s": m.get("wall_time_s", "")}
    if not run.records:
        return [{**base, "dataset": m.get("dataset") or ""}]
    out = []
    for rec in run.records:
        p = paper_for(rec)
        psnr = rec.get("psnr")
        out.append({**base, **{k: rec.get(k, "") for k in ("dataset", "scale", "eval_type", "psnr", "psnr_bicubic",
                                                            "ssim", "n_images", "lr_source")},
                    "paper_psnr": "" if p is None else p,
                    "delta": "" if p is None or psnr is None else round(psnr - p, 4)})
    return out


# ---- the whole report ---------------------------------------------------------------------
def write(sweep_dirs, out_dir=None, plots=True):
    """Write report.md, report.csv (and the plots) for the given sweep folder(s) into `out_dir`
    (default: the first folder). Returns the paths written."""
    if isinstance(sweep_dirs, (str, os.PathLike)):
        sweep_dirs = [sweep_dirs]
    sweep_dirs = [os.fspath(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise ValueError("no sweep folder given")
    out_dir = os.fspath(out_dir or sweep_dirs[0])
    runs = collect(sweep_dirs)
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
    write_text_atomic(os.path.join(out_dir, "report.md"), md)
    written.append(os.path.join(out_dir, "report.md"))

    rows = []
    for v in views:
        rows += v.csv_rows()
    for r in untagged:
        rows += run_csv_rows(r, None)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(os.path.join(out_dir, "report.csv"), buf.getvalue())
    written.append(os.path.join(out_dir, "report.csv"))
    return written + plot_files


def render_markdown(sweep_dirs, runs, views, untagged, plot_files, plots):
    n_ok = sum(r.ok for r in runs)
    problems = [r for r in runs if not r.ok]
    lines = ["# Results beside the paper", "",
             f"Sweeps: {', '.join(f'`{d}`' for d in sweep_dirs)}  ",
             f"Generated: {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m liif.report` from `*/metrics.json`  ",
             f"Runs: {len(runs)} ({n_ok} ok, {len(problems)} failed or missing)  ",
             f"Paper numbers: {paper.SOURCE}", ""]
    datasets = sorted({str(r.metrics.get("dataset")) for r in runs if r.ok})
    if any(d == "sample" for d in datasets):
        lines += ["> Some runs used the embedded **sample** set (e.g. `profile=smoke`): their numbers test the "
                  "plumbing and are not comparable with the paper's.", ""]
    if problems:
        lines += ["## Failed or missing runs", ""]
        lines += [f"- FAILED: {r.path} ({r.reason})" for r in problems]
        lines += ["", "Re-run or resume them, then rebuild this report: "
                  f"`python -m liif.report {' '.join(sweep_dirs)}`.", ""]
    for v in views:
        lines += v.markdown()
    pairs = framework_pairs(views)
    if pairs:
        diffs = [j - t for _, t, j in pairs]
        lines += ["## torch vs jittor", "",
                  f"{len(pairs)} results ran on both; max |jittor − torch| = {max(abs(d) for d in diffs):.3f} dB.", "",
                  "| result | torch | jittor | jittor − torch |", "|---|---|---|---|"]
        lines += [f"| {label} | {t:.3f} | {j:.3f} | {j - t:+.3f} |" for label, t, j in pairs]
        lines.append("")
    if untagged:
        lines += ["## Runs without a paper tag", "", "| run | status | model | framework | dataset | scale | PSNR | bicubic |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in untagged:
            if not r.records:
                lines.append(f"| {r.path} | {r.status} | {r.metrics.get('model') or '–'} | {r.framework} | "
                             f"{r.metrics.get('dataset') or '–'} | – | – | – |")
            for rec in r.records:
                lines.append(f"| {r.path} | {r.status} | {r.metrics.get('model') or '–'} | {r.framework} | "
                             f"{rec.get('dataset')} | x{rec.get('scale')} | {fmt_num(rec.get('psnr'))} | "
                             f"{fmt_num(rec.get('psnr_bicubic'))} |")
        lines.append("")
    lines += ["## Runs", "", "| run | status | table | row | framework | seed | epochs | best val PSNR | wall time |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r.metrics.get("train") or {}
        epochs = f"{t.get('epochs_done', '?')}/{t.get('epochs', '?')}" if t else "–"
        best = fmt_num(t.get("best_val_psnr")) if t else "–"
        wall = r.metrics.get("wall_time_s")
        lines.append(f"| {os.path.basename(r.path)} | {r.status} | {'–' if r.table is None else r.table} | "
                     f"{r.row or '–'} | {r.framework} | {'–' if r.seed is None else r.seed} | {epochs} | {best} | "
                     f"{_duration(wall)} |")
    lines.append("")
    if plot_files:
        lines += ["## Plots", ""]
        lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plot_files]
        lines.append("")
    elif not plots:
        lines += [f"(Plots not drawn yet: `python -m liif.report {' '.join(sweep_dirs)}` draws them.)", ""]
    lines += ["Columns: **ours** is the mean over seeds (± sample std when several ran; n= counts runs with that "
              "result), **paper** the published PSNR (dB), **Δ** ours − paper. See docs/report.md.", ""]
    return "\n".join(lines)


def _duration(seconds):
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---- plots --------------------------------------------------------------------------------
def make_plots(views, runs, out_dir):
    """Each plot on its own: one that fails is logged and skipped, never the report."""
    files = []
    for fn, args in [(plot_psnr_vs_scale, (v, out_dir)) for v in views] + [(plot_training_curves, (runs, out_dir)),
                                                                          (plot_frameworks, (views, out_dir))]:
        try:
            path = fn(*args)
        except Exception as e:  # a plot is a nicety
            log.warning("report: %s failed: %s", fn.__name__, e)
            continue
        if path:
            files.append(path)
    return files


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_psnr_vs_scale(view, out_dir):
    if view.key == "dataset" or not view.runs:
        return None
    panels = view.panels()
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2.5, 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, cols) in zip(axes[0], panels):
        color_of = {}
        for (row, fw), runs in view.groups.items():
            c = color_of.setdefault(row, colors[len(color_of) % len(colors)])
            xs, ys, es = [], [], []
            for _, ds, s, _ in cols:
                m, sd, _ = mean_std(view.values(runs, ds, s))
                if m is not None:
                    xs.append(s), ys.append(m), es.append(sd or 0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", color=c, label=f"{row} ({fw})",
                            linestyle="-" if fw != "jittor" else "-.")
        paper_ds = cols[0][1] if cols else None
        for row, c in color_of.items():  # the paper's whole row, at every scale it reports
            if view.key == "set_scale":
                pts = [(s, paper.lookup(view.number, row, (paper_ds, s))) for s in view.spec["columns"]]
            else:
                pts = [(s, paper.lookup(view.number, row, s)) for s in view.spec["columns"]]
            pts = [(s, p) for s, p in pts if p is not None]
            if pts:
                ax.plot(*zip(*pts), linestyle="--", marker="x", color=c, alpha=0.6, label=f"{row} (paper)")
        bic = [(s, mean_std(view.values(view.ok_runs, ds, s, "bicubic"))[0]) for _, ds, s, _ in cols]
        bic = [(s, b) for s, b in bic if b is not None]
        if bic:
            ax.plot(*zip(*bic), linestyle=":", color="grey", label="bicubic (ours)")
        ax.set_xscale("log")
        ticks = sorted({s for _, _, s, _ in cols} | set(view.spec["columns"]), key=_sort_key)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"x{t}" for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("scale")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(view.spec["title"], fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, out_dir, f"psnr_vs_scale_table{view.number}.png")


def plot_training_curves(runs, out_dir):
    runs = [r for r in runs if r.history]
    if not runs:
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        label = f"{r.row or r.metrics.get('run_name') or os.path.basename(r.path)} ({r.framework}, seed {r.seed})"
        ep = [h.get("epoch") for h in r.history]
        a1.plot(ep, [h.get("loss") for h in r.history], marker=".", label=label)
        val = [(h.get("epoch"), h.get("val_psnr")) for h in r.history if h.get("val_psnr") is not None]
        if val:
            a2.plot(*zip(*val), marker=".", label=label)
    from matplotlib.ticker import MaxNLocator
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_xlabel("epoch"), a1.set_ylabel("training L1 loss"), a1.set_yscale("log"), a1.grid(alpha=0.3)
    a2.set_xlabel("epoch"), a2.set_ylabel("validation PSNR (dB)"), a2.grid(alpha=0.3)
    a1.legend(fontsize=6)
    fig.tight_layout()
    return _save(plt, fig, out_dir, "training_curves.png")


def _save(plt, fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def framework_pairs(views):
    """[(label, torch psnr, jittor psnr)] for every (table, row, dataset, scale) both ran."""
    pairs = []
    for v in views:
        rows = {row for row, _ in v.groups}
        for row in rows:
            t, j = v.groups.get((row, "torch")), v.groups.get((row, "jittor"))
            if not t or not j:
                continue
            keys = set()
            for r in t + j:
                keys |= set(r.psnr())
            for ds, s in sorted(keys, key=lambda k: (str(k[0]), _sort_key(k[1]))):
                mt, mj = mean_std(v.values(t, ds, s))[0], mean_std(v.values(j, ds, s))[0]
                if mt is not None and mj is not None:
                    pairs.append((f"T{v.number} {row} {ds} x{s}", mt, mj))
    return pairs


def plot_frameworks(views, out_dir):
    pairs = framework_pairs(views)
    if not pairs:
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    xs, ys = [p[1] for p in pairs], [p[2] for p in pairs]
    lo, hi = min(xs + ys), max(xs + ys)
    a1.scatter(xs, ys, s=12)
    a1.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
    a1.set_xlabel("torch PSNR (dB)"), a1.set_ylabel("jittor PSNR (dB)"), a1.grid(alpha=0.3)
    diffs = [j - t for _, t, j in pairs]
    a2.bar(range(len(diffs)), diffs)
    a2.set_xticks(range(len(diffs)))
    a2.set_xticklabels([p[0] for p in pairs], rotation=90, fontsize=5)
    a2.set_ylabel("jittor − torch (dB)"), a2.grid(alpha=0.3, axis="y")
    fig.suptitle(f"torch vs jittor: {len(pairs)} results, max |Δ| {max(abs(d) for d in diffs):.3f} dB", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, out_dir, "torch_vs_jittor.png")


# ---- entry points -------------------------------------------------------------------------
def main(cfg):
    """`python run.py task=report dir=DIR` (or dir=[DIR1,DIR2])."""
    from liif.cli import UserError
    dirs = cfg.get("dir")
    if not dirs:
        raise UserError("task=report needs dir=<sweep folder> (or dir=[DIR1,DIR2]), e.g. dir=multirun/2026-01-01/10-00-00")
    dirs = [str(dirs)] if isinstance(dirs, str) else [str(d) for d in dirs]
    for d in dirs:
        if not os.path.isdir(d):
            raise UserError(f"no such sweep folder: {d}")
    paths = write(dirs)
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
    for path in write(args.dirs, out_dir=args.out, plots=not args.no_plots):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
