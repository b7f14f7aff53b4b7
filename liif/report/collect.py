"""Reading sweeps: the job folders of one or more sweeps, each as a `Run` (its metrics.json,
read as a `liif.run.record.RunRecord`, or why there is none, and its Hydra overrides)."""
import json
import os

from liif.errors import BadInput
from liif.io.jsontext import nesting
from liif.run.record import RunRecord
from liif.sizes import format_bytes

# A job folder may come from someone else: what the report reads from it is bounded before it is parsed.
# A run's metrics.json is a few KB plus ~200 bytes per epoch of history (1000 epochs: 200 KB).
MAX_METRICS_BYTES = 8 << 20
# one record per (test set, scale): the LTE table, the largest, has 28; the tables lay out and plot
# one column per (set, scale), so thousands of them would take the report (and its plots) hours
MAX_RECORDS = 1000
MAX_OVERRIDES_BYTES = 64 << 10  # a list of a sweep's key=value overrides
# Python's own limit since 3.11 and 3.10.7; before, int() of a megabyte of digits takes minutes
MAX_INT_DIGITS = 4300


class Run:
    """One job folder: its record (`liif.run.record.RunRecord`; None when there is no readable
    metrics.json, then `reason` says why) and its Hydra overrides."""

    def __init__(self, path, record=None, reason=None, overrides=None, status=None):
        self.path, self.reason, self.overrides = path, reason, overrides or []
        self.record = record if record is not None else RunRecord(status=status or "missing")
        r = self.record
        self.status = r.status
        tag = r.paper or {}
        self.table = _table_key(tag.get("table"))
        self.row = tag.get("row")
        self.framework = r.framework or "?"
        self.seed = r.seed
        self.records = r.records
        self.history = r.train.history if r.train else []
        self.detail = None  # an error's lines after the first (e.g. the expected data layout), shown once
        self._psnr = self._bicubic = None
        if self.status not in ("ok", "missing") and self.reason is None:
            self.reason = f'status "{self.status}"'
            if r.error:
                first, _, detail = str(r.error).partition("\n")
                self.reason += f": {first}"
                self.detail = detail.strip() or None
            elif self.status == "interrupted":
                self.reason += f": resumable, continue with python run.py resume={path}"
            else:
                self.reason += ": see run.log and the sweep's console output"

    @property
    def ok(self):
        return self.status == "ok"

    def psnr(self):
        """{(dataset, scale): psnr} of this run's test records."""
        if self._psnr is None:  # asked for once per cell of the tables: built once
            self._psnr = {(r.dataset, _scale(r.scale)): r.psnr for r in self.records}
        return self._psnr

    def bicubic(self):
        if self._bicubic is None:
            self._bicubic = {(r.dataset, _scale(r.scale)): r.psnr_bicubic for r in self.records}
        return self._bicubic


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
    except (TypeError, ValueError, OverflowError):  # a scale "inf" or "1e999" stays the text it was
        return s


def job_dirs(sweep_dir):
    """The job folders of a sweep: subfolders with a metrics.json or a .hydra/ (hidden ones and
    plain folders skipped). A folder that is itself a run (a single `outputs/...` run) counts too."""
    if os.path.isfile(os.path.join(sweep_dir, "metrics.json")):
        return [sweep_dir]
    try:
        names = os.listdir(sweep_dir)
    except OSError as e:  # a folder we may not read
        raise BadInput(f"cannot read the sweep folder {sweep_dir}: {e.strerror}") from None
    out = []
    for name in sorted(names, key=_natural):
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
        text = _read_at_most(metrics_path, MAX_METRICS_BYTES)
        if nesting(text) > MAX_NESTING:
            return Run(path, None, "unreadable metrics.json: nested too deeply to be a run's record", overrides,
                       status="unreadable")
        record = RunRecord.from_dict(json.loads(text, parse_int=_int))
    except (OSError, ValueError) as e:  # json's errors, bad UTF-8 and a file over the limit are ValueErrors
        return Run(path, None, f"unreadable metrics.json: {e}", overrides, status="unreadable")
    if len(record.records) > MAX_RECORDS:
        return Run(path, None, f"unreadable metrics.json: {len(record.records)} test records, over the {MAX_RECORDS} "
                   "a run writes (one per test set and scale)", overrides, status="unreadable")
    return Run(path, record, None, overrides)


MAX_NESTING = 32  # a run's record nests 4 deep


def _int(digits):
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(digits)


def _read_at_most(path, limit):
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"over {format_bytes(limit)}, far more than a run writes")
    return data


def _read_overrides(path):
    if not os.path.isfile(path):
        return []
    try:
        import yaml
        data = yaml.safe_load(_read_at_most(path, MAX_OVERRIDES_BYTES))
        # overrides are strings; str() of anything else could expand a YAML alias bomb (billion laughs:
        # nine aliases of nine aliases ... parse in a few KB and print as gigabytes)
        return [x for x in data if isinstance(x, str)] if isinstance(data, list) else []
    except Exception:  # an optional nicety: never fail the report for it
        return []


def collect(sweep_dirs):
    runs = []
    for d in sweep_dirs:
        if not os.path.isdir(d):
            raise BadInput(f"no such sweep folder: {d}")
        runs.extend(read_run(p) for p in job_dirs(d))
    return runs
