"""The original LIIF registry: `register(name)` and `make(spec)`, plus a backend.

Model classes in `liif.models` are framework-neutral: they do not inherit from
torch.nn.Module or jittor.Module. `make(spec, backend)` binds the class to the
backend's `Module` base once (cached), so the same definition runs on both.
A spec is the original `{'name': ..., 'args': {...}}` dict, as stored in
checkpoints and in `conf/model/*.yaml`.
"""
import copy

_classes = {}
_bound = {}


def register(name):
    def decorator(cls):
        if name in _classes:
            raise ValueError(f"'{name}' is registered twice")
        _classes[name] = cls
        return cls
    return decorator


def names():
    import liif.models  # noqa: F401  (fills the registry)
    return sorted(_classes)


def bind(cls, backend):
    """The class `cls` made a subclass of `backend.Module`, with `cls.B = backend`."""
    key = (cls, backend.name)
    if key not in _bound:
        _bound[key] = type(cls.__name__, (cls, backend.Module), {"B": backend, "__module__": cls.__module__})
    return _bound[key]


def make(spec, backend, args=None):
    """Build `spec` on `backend`; `args` (if given) update a copy of `spec['args']`."""
    import liif.models  # noqa: F401  (fills the registry)

    name = spec["name"]
    if name not in _classes:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(names())}")
    model_args = copy.deepcopy(dict(spec.get("args") or {}))
    if args is not None:
        model_args.update(args)
    return bind(_classes[name], backend)(**model_args)


def with_defaults(spec):
    """`spec` with every constructor default spelled out (nested `*_spec` too), so that an
    original checkpoint's terse args compare equal to a config's explicit ones."""
    import inspect
    import liif.models  # noqa: F401

    args = dict(spec.get("args") or {})
    for name, param in inspect.signature(_classes[spec["name"]].__init__).parameters.items():
        if name != "self" and param.default is not inspect.Parameter.empty:
            args.setdefault(name, param.default)
    for key, value in args.items():
        if key.endswith("_spec") and isinstance(value, dict):
            args[key] = with_defaults(value)
    return {"name": spec["name"], "args": args}
