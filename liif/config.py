"""Typed configs: one dataclass per config node, and every range check in one place.

These are plain dataclasses (no Hydra, no OmegaConf): the library (`liif.training.trainer.Trainer`,
`liif.evaluation.evaluate.evaluate` ...) takes them, and a script builds them by hand:

    TrainConfig(epochs=2, batch_size=4, lr=1e-3)       # ConfigError at once if a value is out of range

`python run.py` uses the same classes as Hydra structured configs (`liif.cli.main.register_configs`
stores `RunConfig` as the schema of conf/config.yaml): Hydra rejects a wrong type
(`train.batch_size=abc`) while composing, `unknown_setting` names a key these classes do not have
(with the nearest one: run.py checks the command line with it before Hydra, the CLI the composed
config, where a key forced in with `+` gets through Hydra), and the CLI turns the composed config
into these objects, whose `__post_init__` checks the ranges and what each task needs, before any work.

A new key goes into the dataclass of its node (with its default) and into the YAML that sets it.
"""
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from liif.errors import BadInput, ConfigError
from liif.sizes import MAX_BYTES, parse_bytes

TASKS = ("train", "test", "demo", "report", "serve")  # liif.cli.main runs each

# Jittor's set_seed takes a C int (torch.manual_seed 64 bits): a larger seed was a traceback when the
# model was built, after the run had started.
MAX_SEED = (1 << 31) - 1

MISSING = "???"  # OmegaConf's marker: a value that the YAML or the command line must give


def _integer(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(node: object, prefix: str, names: Sequence[str], test: Callable[[Any], bool], what: str) -> None:
    for name in names:
        value = getattr(node, name)
        if value is not None and not test(value):
            raise ConfigError(f"{prefix}{name}={value!r} must be {what}")


def positive_ints(node: object, prefix: str, *names: str) -> None:
    _check(node, prefix, names, lambda v: _integer(v) and v > 0, "a positive integer")


def non_negative_ints(node: object, prefix: str, *names: str) -> None:
    _check(node, prefix, names, lambda v: _integer(v) and v >= 0, "an integer >= 0")


def finite_number(x: object) -> bool:
    """An int or float that a float can hold, finite. YAML reads a 400-digit number as an int, on
    which math.isfinite raises OverflowError (a traceback, where the user needs one line)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def positive_numbers(node: object, prefix: str, *names: str) -> None:
    _check(node, prefix, names, lambda v: finite_number(v) and v > 0, "a positive number (a finite one)")


def one_of(node: object, prefix: str, name: str, choices: Sequence[object]) -> None:
    value = getattr(node, name)
    if value not in choices:
        raise ConfigError(f"{prefix}{name}={value!r} must be one of: {', '.join(map(str, choices))}")


def parse_size(size: Any) -> Tuple[int, int]:
    """(H, W) of positive integers, or a clear BadInput (a ValueError): an output size (`size=` of
    task=demo, `Model.upscale`'s `size`)."""
    try:
        if isinstance(size, (str, bytes)):
            raise TypeError
        height, width = size
    except (TypeError, ValueError):
        raise BadInput(f"size must be [height, width], got {size!r}") from None
    for v in (height, width):
        if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number)) or not float(v).is_integer() or v <= 0:
            raise BadInput(f"size must be two positive integers [height, width], got {list(size)!r}")
    return int(height), int(width)


@dataclass
class TrainConfig:
    """conf/train/*.yaml: the optimisation recipe (the defaults are the paper's)."""
    epochs: int = 1000
    batch_size: int = 16           # the global batch, over all processes
    inp_size: int = 48             # LR patch side
    sample_q: Optional[int] = 2304  # HR pixels sampled per patch (null: every pixel)
    augment: bool = True
    lr: float = 1e-4
    milestones: List[int] = field(default_factory=lambda: [200, 400, 600, 800])
    gamma: float = 0.5
    epoch_val: int = 1
    epoch_save: int = 100
    val_batch_size: int = 16
    num_workers: int = 4
    prefetch: bool = False
    max_steps_per_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        positive_ints(self, "train.", "epochs", "batch_size", "inp_size", "sample_q", "epoch_val", "epoch_save",
                      "val_batch_size", "max_steps_per_epoch")
        non_negative_ints(self, "train.", "num_workers")
        positive_numbers(self, "train.", "lr", "gamma")
        if not all(_integer(m) and m > 0 for m in self.milestones):
            raise ConfigError(f"train.milestones={list(self.milestones)!r} must be positive epoch numbers")


@dataclass
class ScaleConfig:
    """conf/scale/*.yaml: training scales drawn uniformly from [min, max] (max null: always min)."""
    min: float = 1.0
    max: Optional[float] = 4.0

    def __post_init__(self) -> None:
        number = finite_number
        if not (number(self.min) and self.min > 0 and (self.max is None or number(self.max) and self.max >= self.min)):
            raise ConfigError(f"impossible scale range: scale.min={self.min}, scale.max={self.max} (need 0 < min <= max)")


@dataclass
class FrameworkConfig:
    """conf/framework/*.yaml: the framework and its speed options (see the YAML files)."""
    name: str = "torch"
    threads: Optional[int] = None   # CPU threads (null: the framework's default)
    dtype: str = "float32"
    precision: str = "fp32"         # training steps: fp32 or bf16 (PyTorch)
    infer_precision: str = "fp32"   # test, demo, validation
    channels_last: bool = False
    compile: bool = False
    pin_memory: bool = True

    def __post_init__(self) -> None:
        non_negative_ints(self, "framework.", "threads")
        one_of(self, "framework.", "dtype", ("float32", "float64"))
        one_of(self, "framework.", "precision", ("fp32", "bf16"))
        one_of(self, "framework.", "infer_precision", ("fp32", "bf16"))


@dataclass
class ModelConfig:
    """A model preset (liif/models/presets.py, the `model` group): the original `{name, args}` spec (nested `*_spec`)."""
    name: str = MISSING
    args: Dict[str, Any] = field(default_factory=dict)

    def spec(self) -> Dict[str, Any]:
        """The original `{name, args}` spec of the model."""
        return {"name": self.name, "args": self.args}


@dataclass
class SplitConfig:
    """A training or validation split of a dataset (`dataset.train`, `dataset.val`).

    wrapper sr-implicit-downsampled (the default): the images of `root`, cropped and downsampled
    by the recipe (`train.inp_size`, `train.sample_q`, `scale`). sr-implicit-paired and
    sr-implicit-uniform-varied: the LR/HR files of `lr_root`/`hr_root`, paired by sorted name,
    with this node's own `inp_size`, `sample_q`, `size_min`, `size_max` and `gt_resize`."""
    wrapper: str = "sr-implicit-downsampled"
    root: Optional[str] = None
    lr_root: Optional[str] = None
    hr_root: Optional[str] = None
    split_file: Optional[str] = None   # CelebA-HQ: a json {split_key: [names]}
    split_key: Optional[str] = None
    first_k: Optional[int] = None
    repeat: int = 1
    cache: str = "none"                # none, in_memory or bin
    inp_size: Optional[int] = None
    sample_q: Optional[int] = None
    size_min: Optional[int] = None
    size_max: Optional[int] = None
    gt_resize: Optional[int] = None
    augment: Optional[bool] = None     # unused: the recipe's train.augment decides (kept from the original configs)

    def __post_init__(self) -> None:
        positive_ints(self, "dataset split ", "first_k", "repeat", "inp_size", "sample_q", "size_min", "size_max",
                      "gt_resize")
        one_of(self, "dataset split ", "cache", ("none", "in_memory", "bin"))


@dataclass
class TestSetConfig:
    """One entry of `dataset.test`: HR images, optional LR files per scale (`{scale}` in `lr`),
    the evaluation protocol (none, div2k or benchmark) and the scales to test."""
    __test__ = False  # not a pytest test class, despite the name

    name: str = MISSING
    hr: Optional[str] = None
    lr: Optional[str] = None
    protocol: str = "none"
    scales: List[int] = field(default_factory=lambda: [2, 3, 4])
    split_file: Optional[str] = None
    split_key: Optional[str] = None

    def __post_init__(self) -> None:
        if self.hr is None:
            raise ConfigError(f"the test set '{self.name}' has no HR folder (dataset=folder needs dataset.path=DIR)")
        one_of(self, f"dataset.test[{self.name}].", "protocol", ("none", "div2k", "benchmark"))
        check_scales(self.scales, f"dataset.test[{self.name}].scales")


def check_scales(scales: Sequence[int], key: str) -> None:
    for s in scales:
        if not _integer(s) or s <= 0:
            raise ConfigError(f"test scales must be positive integers (the protocols shave s pixels): {key} has {s!r}")


@dataclass
class DatasetConfig:
    """conf/dataset/*.yaml: where the training, validation and test images are."""
    name: str = MISSING
    layout: Optional[str] = None        # div2k: the tree printed when a folder is missing
    path: Optional[str] = None          # dataset=folder: the folder
    test_path: Optional[str] = None     # dataset=folder: the folder tested on
    train: Optional[SplitConfig] = None  # null: a test-only dataset
    val: Optional[SplitConfig] = None
    test: List[TestSetConfig] = field(default_factory=list)


@dataclass
class PathsConfig:
    data_dir: str = "data"
    sample_dir: str = "data/sample"


@dataclass
class InferConfig:
    """conf/config.yaml `infer`: tiled inference at test and demo time (liif/inference/tiled.py, docs/tiling.md)."""
    max_memory: Union[str, int, float] = "auto"  # auto (half the free memory), a size such as 2GB, 512MB, or bytes
    tile: Optional[int] = None     # force square tiles of this many input pixels (null: the largest that fit)

    def __post_init__(self) -> None:
        positive_ints(self, "infer.", "tile")
        if not (isinstance(self.max_memory, str) and self.max_memory.strip().lower() == "auto"):
            try:
                parse_bytes(self.max_memory)
            except ValueError as e:
                raise ConfigError(f"infer.max_memory: {e}") from None


@dataclass
class TestConfig:
    """conf/config.yaml `test`: the evaluation protocol of `task=test` and of a training's final test.

    `cell_clip`: the cell a model is given at an integer test scale s. LTE's `test.py` (and its
    `demo.py`) decodes with the cell multiplied by max(s / 4, 1), 4 being its training range
    (scale_max): beyond x4 the model is told x4's cell. LIIF's `test.py` gives the cell of s itself.
      null:          each model family's published protocol (liif.evaluation.protocol: 4 for `lte`,
                     none for `liif` and `metasr`)
      a number c:    cell x max(s / c, 1) for every model (c >= 1)
      false (or 0):  never: the cell of the scale tested, for every model
    Each test record of metrics.json says which clip its number used (`cell_clip`, null for none)."""
    __test__ = False  # not a pytest test class, despite the name

    cell_clip: Optional[Union[int, float, bool]] = None

    def __post_init__(self) -> None:
        clip = self.cell_clip
        if clip is None or clip is False:
            return
        if not finite_number(clip) or (clip != 0 and clip < 1):
            raise ConfigError(f"test.cell_clip={clip!r} must be a scale >= 1 (the cell is held at that scale's beyond it), "
                              "false (never) or null (each model's published protocol)")


@dataclass
class TaskConfig:
    """conf/task/*.yaml: the task, and the viewer's settings (task=serve, conf/task/serve.yaml, docs/serve.md)."""
    name: str = "train"
    host: str = "127.0.0.1"
    port: int = 8000
    downscale: Optional[int] = None
    max_viewport: int = 1024
    max_upload_mb: float = 16
    max_upload_pixels: int = 1048576
    max_renders: int = 1
    coarse_factor: int = 4
    tile_rows: int = 64
    cache_mb: float = 2048

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ConfigError(f"unknown task '{self.name}'; choose one of: {', '.join(TASKS)}")
        non_negative_ints(self, "task.", "port")  # 0: any free port
        positive_ints(self, "task.", "max_viewport", "max_upload_pixels", "max_renders", "coarse_factor", "tile_rows")
        positive_numbers(self, "task.", "max_upload_mb", "cache_mb")
        for name in ("max_upload_mb", "cache_mb"):  # the viewer takes them in bytes, as an int
            if getattr(self, name) * (1 << 20) > MAX_BYTES:
                raise ConfigError(f"task.{name}={getattr(self, name)!r} must be at most {MAX_BYTES >> 20} (8 EB)")
        if self.downscale is not None and not (_integer(self.downscale) and self.downscale >= 2):
            raise ConfigError(f"task.downscale must be an integer >= 2 (or null), got {self.downscale!r}")


@dataclass
class PaperConfig:
    """An experiment's place in a paper (conf/experiment/*.yaml `paper`): the report prints its numbers beside ours.
    `table`: LIIF's table number, or the name of another paper's table (`lte`; liif/report/paper_results.yaml)."""
    table: Any = None  # int or str: OmegaConf 2.3 fails to merge a Union field inside this Optional node
    row: Optional[str] = None

    def __post_init__(self) -> None:
        if self.table is not None and (isinstance(self.table, bool) or not isinstance(self.table, (int, str))):
            raise ConfigError(f"paper.table={self.table!r} must be a table number or name (liif/report/paper_results.yaml)")


@dataclass
class RunConfig:
    """conf/config.yaml, the whole composed config of `python run.py`."""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    device: str = "auto"
    checkpoint: Any = None            # a path (task=serve: also a list of paths: OmegaConf has no str-or-list type)
    resume: Union[bool, str] = False  # false, true (this run directory), or a run directory / checkpoint
    scales: Optional[List[int]] = None
    input: Optional[str] = None
    size: Any = None                  # demo: [height, width], checked by parse_size (one line for `size=abc`, not Hydra's)
    output: Optional[str] = None
    dir: Any = None                   # report, serve: a folder or a list of folders (str or list, as `checkpoint`)
    eval_bsize: int = 30000
    infer: InferConfig = field(default_factory=InferConfig)
    test: TestConfig = field(default_factory=TestConfig)
    debug: bool = False
    on_bad_file: str = "error"
    run_name: Optional[str] = None
    output_dir: Optional[str] = None
    paper: Optional[PaperConfig] = None

    def __post_init__(self) -> None:
        non_negative_ints(self, "", "seed")
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed={self.seed} must be at most {MAX_SEED}, the largest seed both frameworks take")
        positive_ints(self, "", "eval_bsize")
        one_of(self, "", "on_bad_file", ("error", "skip"))
        if self.scales is not None:
            check_scales(self.scales, "scales")
        self.check_task_settings()

    def check_task_settings(self) -> None:
        """What the task needs from the top-level keys (`checkpoint=` for test ...), before any work."""
        task = self.task.name
        if task == "test" and self.checkpoint is None:
            raise ConfigError("task=test needs checkpoint=PATH (a checkpoint of the original code or of ours)")
        if task == "demo":
            for key in ("checkpoint", "input", "size", "output"):
                if getattr(self, key) is None:
                    raise ConfigError(f"task=demo needs {key}=...: python run.py task=demo checkpoint=CKPT input=IMG "
                                      "size=[H,W] output=OUT.png")
        if task == "report" and not self.dir:
            raise ConfigError("task=report needs dir=<sweep folder> (or dir=[DIR1,DIR2]), "
                              "e.g. dir=multirun/2026-01-01/10-00-00")
        if task == "serve" and not self.checkpoint and not self.dir:
            raise ConfigError("task=serve needs checkpoint=CKPT (several: checkpoint=[A.pth,B.pth]) or "
                              "dir=multirun/<date>/<time>")
        if self.size is not None:
            self.size = list(parse_size(self.size))


def unknown_setting(settings: Mapping[str, Any], schema: Optional[type] = None, also: Iterable[str] = (),
                    where: str = "") -> Optional[str]:
    """What is wrong with the keys of `settings` (a plain nested dict: a composed config, or the
    keys of a command line) against the typed config `schema` (RunConfig by default), in one line
    that names the first unknown key and the nearest valid one; None when every key is known.
    Nodes typed as dicts or Any hold any keys. `also`: more names valid at the top level (the
    command line's config groups: `experiment`, `model/encoder` ...); `where`: the override the
    key comes from, for the message."""
    found = _first_unknown(settings, schema or RunConfig, [], tuple(also))
    if found is None:
        return None
    path, valid = found
    near = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.6)
    hint = f"did you mean '{'.'.join(path[:-1] + near)}'? " if near else ""
    key = ".".join(path)
    return f"unknown setting '{key}'{f' in {where}' if where else ''}: {hint}(`python run.py --cfg job` prints every setting)"


def _first_unknown(settings: Mapping[str, Any], schema: type, path: List[str],
                   also: Tuple[str, ...] = ()) -> Optional[Tuple[List[str], List[str]]]:
    """(path of the first key of `settings` that `schema` lacks, the names valid beside it), or None."""
    hints = typing.get_type_hints(schema)
    valid = [f.name for f in dataclasses.fields(schema)] + list(also)
    for key, value in settings.items():
        if key not in hints:
            if key in also:
                continue
            return path + [str(key)], valid
        child = _dataclass_of(hints[key])
        if child is not None and isinstance(value, dict):
            found = _first_unknown(value, child, path + [key])
            if found:
                return found
    return None


def _dataclass_of(annotation: Any) -> Optional[type]:
    """The dataclass a field holds (`Optional[X]` -> X), or None for anything else (free-form, primitives, lists)."""
    if typing.get_origin(annotation) is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return annotation if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) else None
