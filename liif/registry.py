"""The original LIIF registries: `register(name)` and `make(spec)`, plus a backend for models.

Model classes in `liif.models` are framework-neutral: they do not inherit from
torch.nn.Module or jittor.Module. `make(spec, backend)` binds the class to the
backend's `Module` base once (cached), so the same definition runs on both.
A spec is the original `{'name': ..., 'args': {...}}` dict, as stored in
checkpoints and in `conf/model/*.yaml`. Datasets (`liif.data`) use the same `Registry`.
"""
import copy
import inspect

from liif.errors import UnknownName


class Registry:
    """name -> constructor, with the original's `make(spec, args)` semantics."""

    def __init__(self, kind, loader=None):
        self.kind, self.entries, self._loader = kind, {}, loader

    def register(self, name):
        def decorator(fn):
            if name in self.entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self.entries[name] = fn
            return fn
        return decorator

    def names(self):
        self._load()
        return sorted(self.entries)

    def get(self, name):
        self._load()
        if name not in self.entries:
            raise UnknownName(f"unknown {self.kind} '{name}'; known: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def args_of(self, spec, args=None):
        """A copy of spec['args'], updated with `args` if given."""
        out = copy.deepcopy(dict(spec.get("args") or {}))
        if args is not None:
            out.update(args)
        return out

    def _load(self):
        if self._loader is not None:
            self._loader()


def _import_models():
    import liif.models  # noqa: F401  (importing the package fills the registry)


models = Registry("model", loader=_import_models)
register = models.register
names = models.names
_bound = {}


def bind(cls, backend):
    """The class `cls` made a subclass of `backend.Module`, with `cls.B = backend`."""
    key = (cls, backend.name)
    if key not in _bound:
        _bound[key] = type(cls.__name__, (cls, backend.Module), {"B": backend, "__module__": cls.__module__})
    return _bound[key]


def make(spec, backend, args=None):
    """Build the model `spec` on `backend`; `args` (if given) update a copy of `spec['args']`."""
    return bind(models.get(spec["name"]), backend)(**models.args_of(spec, args))


def with_defaults(spec):
    """`spec` with every constructor default spelled out (nested `*_spec` too), so that an
    original checkpoint's terse args compare equal to a config's explicit ones."""
    args = dict(spec.get("args") or {})
    for name, param in inspect.signature(models.get(spec["name"]).__init__).parameters.items():
        if name != "self" and param.default is not inspect.Parameter.empty:
            args.setdefault(name, param.default)
    for key, value in args.items():
        if key.endswith("_spec") and isinstance(value, dict):
            args[key] = with_defaults(value)
    return {"name": spec["name"], "args": args}
