"""The report's plots (matplotlib, Agg): PSNR against scale per paper table, training curves,
and torch against jittor. Each is optional: one that fails is logged and skipped."""
import logging
import os
import re

from liif.io.durable import write_atomic
from liif.report import paper
from liif.report.tables import _sort_key, framework_pairs, mean_std

log = logging.getLogger(__name__)

MAX_PANELS = 8  # a paper table has at most 5 test sets; hundreds named by runs would draw a figure metres wide
MAX_TICKS = 40  # scales labelled on the x axis; beyond, matplotlib's own ticks
MAX_LABEL = 60  # characters of a name from a run in a legend or title (a megabyte-long one would take minutes)


def make_plots(views, runs, out_dir):
    """Each plot on its own: one that fails is logged and skipped, never the report."""
    files = []
    for fn, args in [(plot_psnr_vs_scale, (v, out_dir)) for v in views] + [(plot_training_curves, (runs, out_dir)),
                                                                          (plot_frameworks, (views, out_dir))]:
        try:
            # names from run folders are labels, not TeX: "$\frac{$" would fail the plot, $...$ be typeset
            with _pyplot().rc_context({"text.parse_math": False}):
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
    panels = view.panels()[:MAX_PANELS]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2.5, 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, cols) in zip(axes[0], panels):
        paper_ds = cols[0][1] if cols else None
        cols = [c for c in cols if _on_log_axis(c[2])]  # a scale "x2" or -1 from a damaged record is not drawn
        color_of = {}
        for (row, fw, cell), runs in view.groups.items():
            c = color_of.setdefault(row, colors[len(color_of) % len(colors)])
            xs, ys, es = [], [], []
            for _, ds, s, _ in cols:
                m, sd, _ = mean_std(view.values(runs, ds, s))
                if m is not None:
                    xs.append(s), ys.append(m), es.append(sd or 0)
            if xs:
                label = _short(f"{row} ({fw}, cell {cell})" if view.show_cell else f"{row} ({fw})")
                ax.errorbar(xs, ys, yerr=es, marker="o", color=c, label=label,
                            linestyle="-" if fw != "jittor" else "-.")
        for row, c in color_of.items():  # the paper's whole row, at every scale it reports
            if view.key == "set_scale":
                pts = [(s, paper.lookup(view.number, row, (paper_ds, s))) for s in paper.columns(view.spec, paper_ds)]
            else:
                pts = [(s, paper.lookup(view.number, row, s)) for s in paper.columns(view.spec)]
            pts = [(s, p) for s, p in pts if p is not None]
            if pts:
                ax.plot(*zip(*pts), linestyle="--", marker="x", color=c, alpha=0.6, label=_short(f"{row} (paper)"))
        bic = [(s, mean_std(view.values(view.ok_runs, ds, s, "bicubic"))[0]) for _, ds, s, _ in cols]
        bic = [(s, b) for s, b in bic if b is not None]
        if bic:
            ax.plot(*zip(*bic), linestyle=":", color="grey", label="bicubic (ours)")
        ax.set_xscale("log")
        paper_cols = paper.columns(view.spec, paper_ds) if view.key == "set_scale" else paper.columns(view.spec)
        ticks = sorted({s for _, _, s, _ in cols} | set(paper_cols), key=_sort_key)
        if len(ticks) <= MAX_TICKS:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"x{t}" for t in ticks], fontsize=7)
            ax.minorticks_off()
        ax.set_xlabel("scale")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(_short(title), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(_short(view.spec["title"], 2 * MAX_LABEL), fontsize=10)  # the papers' titles are up to 110
    fig.tight_layout()
    name = f"table{view.number}" if isinstance(view.number, int) else str(view.number)  # LIIF's Table 1; lte
    # the table's name comes from metrics.json: "/../../x" would aim the file out of the folder
    return _save(plt, fig, out_dir, f"psnr_vs_scale_{re.sub('[^A-Za-z0-9_-]', '_', name)[:64]}.png")


def plot_training_curves(runs, out_dir):
    runs = [r for r in runs if r.history]
    if not runs:
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        label = _short(f"{r.row or r.record.run_name or os.path.basename(r.path)} ({r.framework}, seed {r.seed})")
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


def _on_log_axis(scale):
    return isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0


def _short(text, limit=MAX_LABEL):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _save(plt, fig, out_dir, name):
    path = os.path.join(out_dir, name)
    write_atomic(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return path


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
    a2.set_xticklabels([_short(p[0]) for p in pairs], rotation=90, fontsize=5)
    a2.set_ylabel("jittor − torch (dB)"), a2.grid(alpha=0.3, axis="y")
    fig.suptitle(f"torch vs jittor: {len(pairs)} results, max |Δ| {max(abs(d) for d in diffs):.3f} dB", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, out_dir, "torch_vs_jittor.png")
