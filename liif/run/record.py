"""`metrics.json`, the record every run writes last (on failure too) and the report reads back.

One typed description shared by the writer (`liif.run.rundir.RunLifecycle`) and the reader
(`liif.report`): `RunRecord.to_dict()` is what is written, `RunRecord.from_dict()` reads any
metrics.json back, older ones included (a missing field takes its default; a field of the
wrong type is dropped rather than trusted), and keeps fields it does not know in `extra`.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

STATUSES = ("ok", "failed", "interrupted")  # written by runs; the report adds "missing" and "unreadable"


@dataclass
class TestResult:
    """One (test set, scale) of `task=test` or of a training's final test."""
    __test__ = False  # not a pytest test class, despite the name

    dataset: Optional[str] = None
    scale: Any = None               # an int (a float only for a non-integer scale)
    eval_type: Optional[str] = None  # none, div2k-<s> or benchmark-<s> (liif.evaluation.metrics)
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    psnr_bicubic: Optional[float] = None
    n_images: Optional[int] = None
    seconds: Optional[float] = None
    lr_source: Optional[str] = None  # files, or pillow-bicubic
    # the cell protocol (test.cell_clip, liif/evaluation/protocol.py): the scale beyond which the model was
    # given that scale's cell (LTE's: 4); None: the cell of the scale tested (LIIF's; all older records)
    cell_clip: Optional[float] = None


@dataclass
class TrainSummary:
    epochs: Optional[int] = None        # asked for
    epochs_done: Optional[int] = None
    steps: Optional[int] = None
    best_val_psnr: Optional[float] = None
    history: List[Dict[str, Any]] = field(default_factory=list)  # history.csv's rows: epoch, loss, lr, val_psnr, seconds


@dataclass
class RunRecord:
    status: str = "failed"
    task: Optional[str] = None
    run_name: Optional[str] = None
    model: Optional[str] = None              # the preset name (or the spec's name)
    model_spec: Optional[Dict[str, Any]] = None
    framework: Optional[str] = None
    dataset: Optional[str] = None
    seed: Optional[int] = None
    paper: Optional[Dict[str, Any]] = None   # {table, row} of an experiment
    choices: Dict[str, Any] = field(default_factory=dict)  # Hydra's config-group choices
    wall_time_s: Optional[float] = None
    records: List[TestResult] = field(default_factory=list)
    error: Optional[str] = None              # "<type>: <message>" of a failure, or the interrupting signal
    train: Optional[TrainSummary] = None
    slurm: Optional[Dict[str, str]] = None   # the SLURM job that wrote it (liif.run.slurm.job): job_id, restart_count ...
    extra: Dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept as read

    @classmethod
    def for_run(cls, config, task, choices=None):
        """The record of a run of `config` (a liif.config.RunConfig) as far as the config knows it;
        `choices`: Hydra's config-group choices (`model` names the preset)."""
        from liif.run import slurm
        choices = dict(choices or {})
        return cls(task=task, run_name=config.run_name, model=choices.get("model"), framework=config.framework.name,
                   dataset=config.dataset.name, seed=config.seed,
                   paper=dataclasses.asdict(config.paper) if config.paper else None, choices=choices, slurm=slurm.job())

    def to_dict(self):
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["records"] = [dataclasses.asdict(r) for r in self.records]
        out["train"] = dataclasses.asdict(self.train) if self.train is not None else None
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data):
        """A metrics.json object -> RunRecord; ValueError if `data` is not a JSON object."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {"extra": {k: v for k, v in data.items() if k not in known}}
        for name in ("status", "task", "run_name", "model", "framework", "dataset", "error"):
            kwargs[name] = _typed(data.get(name), str)
        kwargs["status"] = kwargs["status"] or "failed"
        kwargs["seed"] = _typed(data.get("seed"), int)
        kwargs["wall_time_s"] = _number(data.get("wall_time_s"))
        for name in ("model_spec", "paper"):
            kwargs[name] = _typed(data.get(name), dict)
        kwargs["choices"] = _typed(data.get("choices"), dict) or {}
        kwargs["slurm"] = {k: v for k, v in (_typed(data.get("slurm"), dict) or {}).items()
                           if isinstance(k, str) and isinstance(v, str)} or None
        if kwargs["paper"] is not None:
            kwargs["paper"] = _clean(kwargs["paper"], PAPER_TYPES)
        kwargs["records"] = [_dataclass_from(TestResult, _clean(r, RESULT_TYPES))
                             for r in (_typed(data.get("records"), list) or []) if isinstance(r, dict)]
        train = _typed(data.get("train"), dict)
        if train is not None:
            train = _dataclass_from(TrainSummary, _clean(train, TRAIN_TYPES))
            train.history = [_clean(h, HISTORY_TYPES) for h in (train.history if isinstance(train.history, list) else [])
                             if isinstance(h, dict)]
        kwargs["train"] = train
        return cls(**kwargs)


NUMBER = (int, float)
# the nested fields the report reads, and the JSON types it can use: a hand-edited or foreign
# metrics.json with another type there ("psnr": "high", "row": [..]) loses that field, not the report
PAPER_TYPES = {"table": (int, str), "row": str}
RESULT_TYPES = {"dataset": str, "scale": (int, float, str), "eval_type": str, "psnr": NUMBER, "ssim": NUMBER,
                "psnr_bicubic": NUMBER, "n_images": int, "seconds": NUMBER, "lr_source": str, "cell_clip": NUMBER}
HISTORY_TYPES = {"epoch": int, "loss": NUMBER, "lr": NUMBER, "val_psnr": NUMBER, "seconds": NUMBER}
TRAIN_TYPES = {"epochs": int, "epochs_done": int, "steps": int, "best_val_psnr": NUMBER}


def _clean(data, types):
    """`data` without the known fields whose value is not of their type (bools are not numbers, and a
    number must be finite: see `_finite`)."""
    return {k: v for k, v in data.items() if k not in types or v is None or _typed(v, types[k]) is not None}


def _typed(value, kind):
    if isinstance(value, bool) or not isinstance(value, kind):
        return None
    return value if not isinstance(value, (int, float)) or _finite(value) else None


def _finite(value):
    """A number every sum, mean and format can take: JSON's NaN, Infinity, 1e999 and an int too
    large for a float (a few hundred digits) are not; a run never writes them."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(value):
    if _typed(value, (int, float)) is None:
        return None
    return float(value)


def _dataclass_from(cls, data):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
