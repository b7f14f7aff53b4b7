"""The report's tables: per paper table, our runs beside the published numbers (markdown and CSV)."""
import math
import os
import re
import time

from liif.report import paper
from liif.report.collect import _scale

CSV_FIELDS = ["run_dir", "status", "reason", "table", "row", "framework", "seed", "run_name", "model", "dataset",
              "scale", "eval_type", "psnr", "psnr_bicubic", "ssim", "n_images", "lr_source", "cell_clip", "paper_psnr",
              "delta", "wall_time_s"]
NO_RECORDS = "–"  # the cell protocol of a run without test records


def cell_label(run):
    """The cell protocol of a run's numbers (metrics.json records' `cell_clip`, test.cell_clip):
    'none' (the cell of the scale tested: LIIF's), 'x4' (held at x4's cell beyond x4: LTE's), several
    joined by ' + ' when a run mixed them, None for a run without records."""
    clips = {rec.cell_clip for rec in run.records}
    if not clips:
        return None
    return " + ".join(_clip_text(c) for c in sorted(clips, key=lambda c: (c is not None, c or 0)))


def _clip_text(clip):
    if clip is None:
        return "none"
    return f"x{int(clip)}" if float(clip).is_integer() else f"x{clip}"


def table_label(number):
    """'T1' for LIIF's Table 1, the name for a named table ('lte')."""
    return f"T{number}" if isinstance(number, int) else str(number)


def mean_std(values):
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None, None, 0
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None, 1
    std = math.sqrt(sum((v - mean) * (v - mean) for v in values) / (len(values) - 1))  # ** 2 raises on 1e200
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
        # numbers of different cell protocols are never averaged together: a group per (row, framework,
        # protocol); a run without records joins its row's protocol
        labels = {id(r): cell_label(r) for r in runs}
        known = {}
        for r in runs:
            if labels[id(r)] is not None:
                known.setdefault((r.row, r.framework), labels[id(r)])
        self.cell = {id(r): labels[id(r)] or known.get((r.row, r.framework), NO_RECORDS) for r in runs}
        # the protocol is shown where numbers of different protocols could meet: a table whose published
        # numbers used another protocol than LIIF's, or any run not tested with LIIF's
        self.show_cell = bool(self.spec.get("protocol")) or any(c not in ("none", NO_RECORDS) for c in self.cell.values())
        self.groups = {}  # (row, framework, cell protocol) -> [runs], paper order first
        for r in sorted(runs, key=lambda r: (self._row_order(r.row), _framework_order(r.framework), str(r.seed))):
            self.groups.setdefault((r.row, r.framework, self.cell[id(r)]), []).append(r)

    def _row_order(self, row):
        names = list(self.spec["rows"])
        return (names.index(row), "") if row in names else (len(names), str(row))

    def datasets(self):
        seen = {}
        for r in self.ok_runs:
            for rec in r.records:
                seen.setdefault(rec.dataset)
        return list(seen)

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
                scales = sorted(ours.get(ds) or paper.columns(self.spec, ds), key=_sort_key)
                title = f"ours on {ds}" + ("" if ds == ref or ref is None else f", the paper on {ref}")
                out.append((title, [(f"x{s}", ds, s, s) for s in scales]))
            return out
        if self.key == "set_scale":
            sets = list(self.spec.get("sets", []))
            sets += [ds for ds in self.datasets() if ds not in sets]
            out = []
            for ds in sets:
                scales = sorted(ours.get(ds) or paper.columns(self.spec, ds), key=_sort_key)
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
            if dataset is not None and scale is not None:  # one cell: looked up, not searched for
                hits = [table[dataset, scale]] if table.get((dataset, scale)) is not None else []
            else:
                hits = [v for (ds, s), v in table.items() if (dataset is None or ds == dataset)
                        and (scale is None or s == scale) and v is not None]  # a record without bicubic, say
            if hits:
                out.append(sum(hits) / len(hits))
        return out

    def paper_value(self, row, column):
        return None if column is None else paper.lookup(self.number, row, column)

    def markdown(self):
        title = self.spec["title"] if paper.table(self.number) else f"Table {_md(self.number)}"  # a table tag of a run
        lines = [f"## {title}", ""]
        if self.spec.get("source"):
            lines += [f"Published numbers: {' '.join(str(self.spec['source']).split())}  "]
        if self.spec.get("protocol"):
            lines += [f"Their test protocol: {' '.join(str(self.spec['protocol']).split())}  "]
        if self.show_cell:
            lines += ["The **cell** column is the cell protocol of our numbers (metrics.json `cell_clip`, "
                      "`test.cell_clip`): none = the cell of the scale tested (LIIF's), x4 = the cell of x4 beyond x4 "
                      "(LTE's)."]
        if lines[-1] != "":
            lines.append("")
        cell_col = (lambda text: [text]) if self.show_cell else (lambda text: [])  # noqa: E731
        for title, cols in self.panels():
            lines += [f"**{_md(title)}**", ""]
            head = ["row", "framework"] + cell_col("cell") + ["runs", ""] + [_md(c[0]) for c in cols]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for (row, fw, cell), runs in self.groups.items():
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
                lines.append("| " + " | ".join([_md(row), _md(fw)] + cell_col(_md(cell)) + [runs_cell, "ours"] + ours) + " |")
                lines.append("| " + " | ".join(["", ""] + cell_col("") + ["", "paper"] + [fmt_num(p) for p in paper_vals])
                             + " |")
                lines.append("| " + " | ".join(["", ""] + cell_col("") + ["", "Δ"] + [fmt_num(d, True) for d in deltas])
                             + " |")
            if self.ok_runs:  # the bicubic floor, measured on the same test images
                bic = [fmt_num(mean_std(self.values(self.ok_runs, ds, s, "bicubic"))[0]) for _, ds, s, _ in cols]
                paper_bic = [self.paper_value("Bicubic", pc) for *_, pc in cols]
                lines.append("| " + " | ".join(["Bicubic", "–"] + cell_col("–") + ["–", "ours"] + bic) + " |")
                if any(p is not None for p in paper_bic):
                    lines.append("| " + " | ".join(["", ""] + cell_col("") + ["", "paper"] + [fmt_num(p) for p in paper_bic])
                                 + " |")
            tested = {pc[1] if isinstance(pc, tuple) else pc for *_, pc in cols if pc is not None}
            panel_set = cols[0][1] if cols and self.key == "set_scale" else None  # its own columns (lte: per set)
            untested = [c for c in paper.columns(self.spec, panel_set) if c not in tested]
            if self.ok_runs and tested and untested:
                lines += ["", "The paper also reports " + ", ".join(f"x{c}" if isinstance(c, int) else str(c)
                                                                    for c in untested) + " (not tested here)."]
            lines.append("")
        ran = {row for row, _, _ in self.groups}
        not_run = [r for r in self.spec["rows"] if r not in ran and r != "Bicubic"]
        if not_run:
            lines += ["Not in these sweeps: " + ", ".join(not_run) + ".", ""]
        problems = [r for r in self.runs if not r.ok]
        for r in problems:
            lines.append(f"- FAILED: {_md(r.path)} ({_md(r.reason)})")
        if problems:
            lines.append("")
        return lines

    def csv_rows(self):
        rows = []
        for r in self.runs:
            rows += run_csv_rows(r, self.number, lambda rec, r=r: self._paper_for(r.row, rec))
        return rows

    def _paper_for(self, row, rec):
        ds, s = rec.dataset, _scale(rec.scale)
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
    m = run.record
    base = {"run_dir": run.path, "status": run.status, "reason": run.reason or "", "table": "" if table is None else table,
            "row": run.row or "", "framework": run.framework, "seed": "" if run.seed is None else run.seed,
            "run_name": m.run_name or "", "model": m.model or "",
            "wall_time_s": "" if m.wall_time_s is None else m.wall_time_s}
    if not run.records:
        return [{**base, "dataset": m.dataset or ""}]
    out = []
    for rec in run.records:
        p = paper_for(rec)
        psnr = rec.psnr
        out.append({**base, **{k: _blank(getattr(rec, k)) for k in ("dataset", "scale", "eval_type", "psnr", "psnr_bicubic",
                                                            "ssim", "n_images", "lr_source")},
                    "cell_clip": _clip_text(rec.cell_clip).lstrip("x"),  # 'none', or the scale
                    "paper_psnr": "" if p is None else p,
                    "delta": "" if p is None or psnr is None else round(psnr - p, 4)})
    return out


# ---- the whole report ---------------------------------------------------------------------


def framework_pairs(views):
    """[(label, torch psnr, jittor psnr)] for every (table, row, dataset, scale) both ran."""
    pairs = []
    for v in views:
        rows = {(row, cell) for row, _, cell in v.groups}
        for row, cell in sorted(rows, key=lambda k: (str(k[0]), str(k[1]))):
            t, j = v.groups.get((row, "torch", cell)), v.groups.get((row, "jittor", cell))
            if not t or not j:
                continue
            name = f"{row} (cell {cell})" if v.show_cell else row
            keys = set()
            for r in t + j:
                keys |= set(r.psnr())
            for ds, s in sorted(keys, key=lambda k: (str(k[0]), _sort_key(k[1]))):
                mt, mj = mean_std(v.values(t, ds, s))[0], mean_std(v.values(j, ds, s))[0]
                if mt is not None and mj is not None:
                    pairs.append((f"{table_label(v.number)} {name} {ds} x{s}", mt, mj))
    return pairs


def render_markdown(sweep_dirs, runs, views, untagged, plot_files, plots):
    n_ok = sum(r.ok for r in runs)
    problems = [r for r in runs if not r.ok]
    lines = ["# Results beside the paper", "",
             f"Sweeps: {', '.join(_code(d) for d in sweep_dirs)}  ",
             f"Generated: {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m liif.report` from `*/metrics.json`  ",
             f"Runs: {len(runs)} ({n_ok} ok, {len(problems)} failed or missing)  ",
             f"Paper numbers: {paper.SOURCE}", ""]
    datasets = sorted({str(r.record.dataset) for r in runs if r.ok})
    if any(d == "sample" for d in datasets):
        lines += ["> Some runs used the embedded **sample** set (e.g. `profile=smoke`): their numbers test the "
                  "plumbing and are not comparable with the paper's.", ""]
    if problems:
        lines += ["## Failed or missing runs", ""]
        lines += [f"- FAILED: {_md(r.path)} ({_md(r.reason)})" for r in problems]
        for detail in dict.fromkeys(r.detail for r in problems if r.detail):  # each distinct one once
            n = sum(r.detail == detail for r in problems)
            fence = _fence(detail)
            lines += ["", f"{'All' if n == len(problems) else n} of the failures above share this detail:", "", fence,
                      detail, fence]
        lines += ["", "Re-run or resume them, then rebuild this report: "
                  f"{_code('python -m liif.report ' + ' '.join(sweep_dirs))}.", ""]
    for v in views:
        lines += v.markdown()
    pairs = framework_pairs(views)
    if pairs:
        diffs = [j - t for _, t, j in pairs]
        lines += ["## torch vs jittor", "",
                  f"{len(pairs)} results ran on both; max |jittor − torch| = {max(abs(d) for d in diffs):.3f} dB.", "",
                  "| result | torch | jittor | jittor − torch |", "|---|---|---|---|"]
        lines += [f"| {_md(label)} | {t:.3f} | {j:.3f} | {j - t:+.3f} |" for label, t, j in pairs]
        lines.append("")
    if untagged:
        # the cell protocol of each number, where not every one is LIIF's (test.cell_clip)
        show_cell = any(rec.cell_clip is not None for r in untagged for rec in r.records)
        cell = (lambda text: f" {text} |") if show_cell else (lambda text: "")  # noqa: E731
        lines += ["## Runs without a paper tag", "", "| run | status | model | framework | dataset | scale |" + cell("cell")
                  + " PSNR | bicubic |", "|---|---|---|---|---|---|" + cell("---").strip() + "---|---|"]
        for r in untagged:
            if not r.records:
                lines.append(f"| {_md(r.path)} | {_md(r.status)} | {_md(r.record.model or '–')} | {_md(r.framework)} | "
                             f"{_md(r.record.dataset or '–')} | – |{cell('–')} – | – |")
            for rec in r.records:
                scale = "–" if rec.scale is None else f"x{_md(rec.scale)}"
                lines.append(f"| {_md(r.path)} | {_md(r.status)} | {_md(r.record.model or '–')} | {_md(r.framework)} | "
                             f"{_md(rec.dataset)} | {scale} |{cell(_clip_text(rec.cell_clip))} "
                             f"{fmt_num(rec.psnr)} | {fmt_num(rec.psnr_bicubic)} |")
        lines.append("")
    lines += ["## Runs", "", "| run | status | table | row | framework | seed | epochs | best val PSNR | wall time |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r.record.train
        epochs = f"{_unknown(t.epochs_done)}/{_unknown(t.epochs)}" if t else "–"
        best = fmt_num(t.best_val_psnr) if t else "–"
        wall = r.record.wall_time_s
        lines.append(f"| {_md(os.path.basename(r.path))} | {_md(r.status)} | {'–' if r.table is None else _md(r.table)} | "
                     f"{_md(r.row or '–')} | {_md(r.framework)} | {'–' if r.seed is None else r.seed} | {epochs} | {best} | "
                     f"{_duration(wall)} |")
    lines.append("")
    if plot_files:
        lines += ["## Plots", ""]
        lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plot_files]
        lines.append("")
    elif not plots:
        lines += [f"(Plots not drawn yet: {_code('python -m liif.report ' + ' '.join(sweep_dirs))} draws them.)", ""]
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


def _blank(x):
    return "" if x is None else x


def _unknown(x):
    return "?" if x is None else x


# What a run folder says (its name, metrics.json's names and error texts) may come from someone else:
# in report.md it is text, never markup. A backslash before each character that would split a table
# row (|), open code (`) or a link or image ([ ]), or escape the next one (\); HTML's three as entities
# (no tag, no entity reaches the page); control characters (line breaks: a new block, a heading) as spaces.
_MD_BACKSLASHED = re.compile(r"([\\|`\[\]])")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _md(text):
    """Text from a run folder as markdown text, on one line: in a table cell, a list item, a heading."""
    text = _CONTROL.sub(" ", str(text))
    text = _MD_BACKSLASHED.sub(r"\\\1", text)
    text = re.sub("[&<>]", lambda m: _MD_ENTITIES[m.group()], text)
    return "\\" + text if text.startswith("#") else text


def _code(text):
    """`text` as inline code on one line: a fence of more backticks than any run of them inside."""
    text = _CONTROL.sub(" ", str(text))
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fence(text):
    """The fence of a code block holding `text`: longer than any run of backticks in it, so no line
    of the text can close the block (an error text with ``` and a heading after it stays code)."""
    return "`" * max(3, max(map(len, re.findall("`+", text)), default=0) + 1)
