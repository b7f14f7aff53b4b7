"""The evaluation protocol of the cell: which cell a model is given at an integer test scale.

LIIF's `test.py` decodes scale s with the cell of s (2/H, 2/W). LTE's `test.py` multiplies it by
max(s / scale_max, 1), scale_max = 4 being its training range: beyond x4 the model is told x4's
cell ("cell clip for extrapolation"). The setting is `test.cell_clip` (liif.config.TestConfig):
null = each model family's published protocol (`PUBLISHED_CELL_CLIP`), a number = that clip
for every model, false (or 0) = never.
"""
from typing import Optional, Union

# model spec name -> the scale its authors' test.py holds the cell at beyond (their scale_max);
# a family absent here is tested with the cell of the scale (LIIF's protocol)
PUBLISHED_CELL_CLIP = {"lte": 4}  # jaewon-lee-b/lte test.py: cell * max(scale / scale_max, 1), scale_max 4

CellClip = Optional[Union[int, float, bool]]


def cell_clip_for(model_name: Optional[str], setting: CellClip = None) -> Optional[float]:
    """The clip a model named `model_name` (its spec's name: liif, metasr, lte ...) is tested with
    under `setting` (test.cell_clip, checked by TestConfig); None: no clip (the cell of the scale)."""
    if setting is None:
        clip = PUBLISHED_CELL_CLIP.get(str(model_name))
    elif setting is False or setting == 0:
        clip = None
    else:
        clip = setting
    return None if clip is None else (int(clip) if float(clip).is_integer() else float(clip))


def cell_factor(scale: float, clip: Optional[float]) -> float:
    """What the cell of `scale` is multiplied by under `clip` (1 without one): max(scale / clip, 1)."""
    return 1.0 if clip is None else max(scale / clip, 1.0)
