"""Reading sweeps: the job folders of one or more sweeps, each as a `Run` (its metrics.json,
read as a `liif.run.record.RunRecord`, or why there is none, and its Hydra overrides)."""
import json
import os

from liif.errors import BadInput
from liif.run.record import RunRecord


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
        return {(r.dataset, _scale(r.scale)): r.psnr for r in self.records}

    def bicubic(self):
        return {(r.dataset, _scale(r.scale)): r.psnr_bicubic for r in self.records}


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
            record = RunRecord.from_dict(json.load(f))
    except (OSError, ValueError) as e:
        return Run(path, None, f"unreadable metrics.json: {e}", overrides, status="unreadable")
    return Run(path, record, None, overrides)


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
            raise BadInput(f"no such sweep folder: {d}")
        runs.extend(read_run(p) for p in job_dirs(d))
    return runs
