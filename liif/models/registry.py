"""The model registry of the original LIIF: `register(name)` and `make(spec, backend)`.

Model classes in `liif.models` are framework-neutral: they do not inherit from
torch.nn.Module or jittor.Module. `make(spec, backend)` binds the class to the
backend's `Module` base once (cached), so the same definition runs on both.
A spec is the original `{'name': ..., 'args': {...}}` dict, as stored in
checkpoints and in the presets (`liif/models/presets.py`).
Importing this module imports the package `liif.models` first, which registers every model.
"""
import inspect
import types
import typing

from liif.registry import Registry


models = Registry("model")  # filled by liif/models/__init__.py, which Python runs before this module
register = models.register
names = models.names
_bound = {}


def bind(cls, backend):
    """The class `cls` made a subclass of `backend.Module`, with `cls.backend = backend`."""
    key = (cls, backend.name)
    if key not in _bound:
        _bound[key] = type(cls.__name__, (cls, backend.Module), {"backend": backend, "__module__": cls.__module__})
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


def spec_problem(spec, where="model"):
    """What is wrong with `spec` (a checkpoint's, say) against the registered constructors'
    signatures, in one line naming the argument; None if nothing is. Checked: the name is
    registered, every argument is a parameter of the constructor, its value has the annotated
    type (an int is a float; a bool is not an int), the required ones are there (not in nested
    specs: a parent model passes some, e.g. LIIF gives its MLP `in_dim`), and nested `*_spec`s."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return f"{where} must be {{'name': ..., 'args': {{...}}}}, got {_short(spec)}"
    name, args = spec["name"], spec.get("args") or {}
    if name not in models.names():
        return f"unknown model '{name}' ({where}); known: {', '.join(models.names())}"
    label = f"model '{name}'" if where == "model" else f"'{name}' ({where})"
    if not isinstance(args, dict):
        return f"the arguments of {label} must be a dict, got {_short(args)}"
    params = {k: p for k, p in inspect.signature(models.get(name).__init__).parameters.items() if k != "self"}
    for key, value in args.items():
        if key not in params:
            return f"unknown argument '{key}' of {label}; its arguments: {', '.join(params)}"
        annotation = params[key].annotation
        if annotation is not inspect.Parameter.empty and not _has_type(value, annotation):
            return (f"argument '{key}' of {label} must be {_type_name(annotation)}, "
                    f"got {_short(value)} ({type(value).__name__})")
        if key.endswith("_spec") and isinstance(value, dict):
            problem = spec_problem(value, f"the {key} of '{name}'")
            if problem:
                return problem
    if where == "model":
        missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in args]
        if missing:
            return f"{label} needs the argument(s) {', '.join(missing)}"
    return None


def _has_type(value, annotation):
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_has_type(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation) or annotation
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        items = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and all(_has_type(v, items[0]) for v in value if items)
    return isinstance(value, origin)


def _type_name(annotation):
    return getattr(annotation, "__name__", None) if not typing.get_args(annotation) else str(annotation)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
