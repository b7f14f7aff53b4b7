"""Encoder features cached per (checkpoint, image), and decoding from them.

`Model.query` runs the encoder on every call; the viewer renders many viewports of one image, so
it encodes each image once per checkpoint through the inference engine (`Model.encode(...,
cache=True)`, liif/inference/tiled.py: tiles within the memory budget, each tile's features and latent
table kept) and decodes each viewport from that `Encoding`: the same queries, through the same
engine as `Model.query`, rounded to uint8 as `Model.upscale` rounds.
"""
import threading

from cachetools import LRUCache

from liif.value_range import model_range_to_image


def encode(model, image, max_memory="auto", bsize=30000, tile=None):
    """Encode `image` (uint8 HxWx3) for viewing: an `Encoding` with every tile's features and
    latent table ready (for viewports at x1 or more), and the bytes it holds."""
    encoding = model.encode(image, max_memory=max_memory, bsize=bsize, tile=tile, cache=True, progress=False).prepare()
    return encoding, encoding.nbytes


def decode(encoding, coord, cell):
    """uint8 (Q, 3) RGB at `coord`, `cell` (1, Q, 2) from an `encode`d image (as `Model.query`, then
    rounded as `Model.upscale` rounds: round(clip(x / 2 + 1/2, 0, 1) * 255), in float32)."""
    return model_range_to_image(encoding.query(coord[0], cell[0]))


class FeatureCache:
    """Decoding states by key, least recently used dropped beyond `budget` bytes (the newest is
    always kept). `encodes` counts encoder runs."""

    def __init__(self, budget):
        self.budget, self.encodes = budget, 0
        whole = max(1, budget)
        # an entry counts its bytes, at least 1 and at most the whole budget: one over the budget
        # evicts every other and is kept alone, as the newest
        self._items = LRUCache(whole, getsizeof=lambda entry: min(max(1, entry[1]), whole))  # key -> (state, nbytes)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe; renders run in worker threads

    def get(self, key, model, image, **options):
        """The `Encoding` for `key`, encoding `image` with `model` on a miss; returns (encoding, hit)."""
        with self._lock:
            if key in self._items:
                return self._items[key][0], True  # and now the most recently used
        state, nbytes = encode(model, image, **options)
        with self._lock:
            self.encodes += 1
            self._items[key] = (state, nbytes)
        return state, False

    def drop(self, predicate):
        """Forget every key for which predicate(key) is true (an image or upload that is gone)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def __contains__(self, key):
        return key in self._items
