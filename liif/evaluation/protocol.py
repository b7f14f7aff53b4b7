"""The evaluation protocol of the cell: which cell a model is given at an integer test scale.

LIIF's `test.py` decodes scale s with the cell of s (2/H, 2/W). LTE's `test.py` multiplies it by
max(s / scale_max, 1), scale_max = 4 being its training range: beyond x4 the model is told x4's
cell ("cell clip for extrapolation"). The setting is `test.cell_clip` (liif.config.TestConfig):
null = each model family's published protocol (the model class's `published_cell_clip`, e.g.
liif/models/lte.py; a class without one is tested with the cell of the scale, LIIF's protocol),
a number = that clip for every model, false (or 0) = never.
"""
from typing import Optional, Union

from liif.models import registry

CellClip = Optional[Union[int, float, bool]]


def cell_clip_for(model_name: Optional[str], setting: CellClip = None) -> Optional[float]:
    """The clip a model named `model_name` (its spec's name: liif, metasr, lte ...) is tested with
    under `setting` (test.cell_clip, checked by TestConfig); None: no clip (the cell of the scale)."""
    if setting is None:
        known = model_name in registry.names()
        clip = getattr(registry.models.get(model_name), "published_cell_clip", None) if known else None
    elif setting is False or setting == 0:
        clip = None
    else:
        clip = setting
    return None if clip is None else (int(clip) if float(clip).is_integer() else float(clip))


def cell_factor(scale: float, clip: Optional[float]) -> float:
    """What the cell of `scale` is multiplied by under `clip` (1 without one): max(scale / clip, 1)."""
    return 1.0 if clip is None else max(scale / clip, 1.0)
