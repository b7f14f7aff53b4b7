"""A name -> constructor table with the original LIIF's `make(spec)` semantics.

The model registry (`liif.models.registry`) and the dataset registry (`liif.data`) are both one of
these: a spec is the original `{'name': ..., 'args': {...}}` dict, so the original configs and
checkpoints build unchanged.
"""
import copy

from liif.errors import UnknownName


class Registry:
    """name -> constructor, with the original's `make(spec, args)` semantics."""

    def __init__(self, kind):
        self.kind, self.entries = kind, {}

    def register(self, name):
        def decorator(fn):
            if name in self.entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self.entries[name] = fn
            return fn
        return decorator

    def names(self):
        return sorted(self.entries)

    def get(self, name):
        if name not in self.entries:
            raise UnknownName(f"unknown {self.kind} '{name}'; known: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def args_of(self, spec, args=None):
        """A copy of spec['args'], updated with `args` if given."""
        out = copy.deepcopy(dict(spec.get("args") or {}))
        if args is not None:
            out.update(args)
        return out
