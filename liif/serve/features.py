"""Encoder features cached per (checkpoint, image), and decoding from them.

`Model.query` runs the encoder on every call; the viewer renders many viewports of one image, so
it runs the encoder once per image and checkpoint (`encode`), keeps the network's decoding state
(the feature map, and the fast path's latent table) in a `FeatureCache`, and decodes each viewport
from it (`decode`): the body of `Model.query` after its `gen_feat`, with `Model.upscale`'s rounding
to uint8 on the device. Same queries, same chunks of `bsize`: the same pixels as `Model.query`.
(When a tiled engine with cacheable features lands in liif/, these two functions switch to it.)
"""
import threading
from collections import OrderedDict

import numpy as np

# what the models keep from gen_feat for query_rgb (liif: _feat, the latent table _table and the tile window
# _window, None for a whole image (liif/tiled.py); metasr: _feat, _window)
DECODING_STATE = ("_feat", "_table", "_window")


def normalise(image):
    """uint8 HxWx3 -> the model's input (1, 3, h, w) float32 in [-1, 1], as `Model.upscale` makes it."""
    return np.ascontiguousarray(((image.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None])


def encode(model, image):
    """Run the encoder on `image` (uint8 HxWx3); return the decoding state and its size in bytes."""
    B, net = model.backend, model.net
    net.eval()
    with B.no_grad(), B.autocast(model.precision, model.device):
        feat = net.gen_feat(B.tensor(normalise(image), like=_anchor(model)))
        # one query builds whatever the decoder caches per feature map (the latent table)
        one = B.tensor(np.zeros((1, 1, 2), np.float32), like=feat)
        B.materialize(net.query_rgb(one, one + 1))
    state = {name: getattr(net, name) for name in DECODING_STATE if name in vars(net)}
    return state, _nbytes(state)


def decode(model, state, coord, cell, bsize=30000):
    """uint8 (Q, 3) RGB at `coord`, `cell` (1, Q, 2) from an `encode` state (as `Model.query`, then rounded)."""
    B, net = model.backend, model.net
    for name, value in state.items():
        setattr(net, name, value)
    with B.no_grad(), B.autocast(model.precision, model.device):
        anchor = state["_feat"]
        out = B.tensor(np.empty((coord.shape[1], 3), np.uint8), like=anchor)
        for start in range(0, coord.shape[1], bsize):
            pred = net.query_rgb(B.tensor(coord[:, start:start + bsize], like=anchor),
                                 B.tensor(cell[:, start:start + bsize], like=anchor))[0]
            out[start:start + pred.shape[0]] = B.to_uint8(pred.float() * 0.5 + 0.5)
            out = B.materialize(out)
    return B.to_numpy(out)


def _anchor(model):
    return next(iter(model.net.parameters()))


def _nbytes(state):
    total = 0
    for value in state.values():
        for t in value if isinstance(value, tuple) else (value,):
            shape = getattr(t, "shape", None)
            if shape is not None:
                total += int(np.prod(tuple(shape))) * 4
    return total


class FeatureCache:
    """Decoding states by key, least recently used dropped beyond `budget` bytes (the newest is
    always kept). `encodes` counts encoder runs."""

    def __init__(self, budget):
        self.budget, self.encodes = budget, 0
        self._items = OrderedDict()  # key -> (state, nbytes)
        self._lock = threading.Lock()

    def get(self, key, model, image):
        """The state for `key`, encoding `image` with `model` on a miss; returns (state, hit)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0], True
        state, nbytes = encode(model, image)
        with self._lock:
            self.encodes += 1
            self._items[key] = (state, nbytes)
            while len(self._items) > 1 and sum(n for _, n in self._items.values()) > self.budget:
                self._items.popitem(last=False)
        return state, False

    def drop(self, predicate):
        """Forget every key for which predicate(key) is true (an image or upload that is gone)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def __contains__(self, key):
        return key in self._items
