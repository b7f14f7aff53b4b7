"""A checkpoint never runs code (issue 11, class 1).

Crafted pickles whose every payload would create a marker file: os.system, posix.system,
builtins.eval/exec/open, subprocess, a getattr chain, importlib, a dotted name, a pickle or a torch
file nested inside the pickle, the INST/OBJ opcodes, the extension registry. Each is placed in every
slot of both of torch's formats: the zip's data.pkl (the whole object, nested in the state dict, in a
key, in the optimizer state, in each field of a storage reference and of a tensor), and the legacy
format's five pickles (magic number, protocol, system info, object, storage keys). Every one must
end as the project's bad-checkpoint error, in one line, with the marker file absent, under both
frameworks and through the CLI. A control test shows each payload is live: plain pickle runs it.
"""
import copyreg
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import liif
from liif.errors import CheckpointError
from liif.models import checkpoint
from liif.io import torchfile

torch = pytest.importorskip("torch")

HAS_JITTOR = __import__("importlib").util.find_spec("jittor") is not None


# --- pickle building blocks: each "expression" pushes one object -------------------------------

def _str(s):
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module, name):
    return f"c{module}\n{name}\n".encode()


def _call(fn, *args):
    return fn + b"(" + b"".join(args) + b"tR"


def payloads(marker):
    """name -> a pickle expression that creates `marker` when plainly unpickled."""
    m = str(marker)
    touch = _str(f"touch '{m}'")
    open_it = _str(f"open({m!r}, 'w').close()")
    inner = pickle.dumps(_Reduce(os.system, (f"touch '{m}'",)), protocol=2)
    torch_inner = io.BytesIO()
    torch.save(_Reduce(os.system, (f"touch '{m}'",)), torch_inner)
    return {
        "os.system": _call(_global("os", "system"), touch),
        "posix.system": _call(_global("posix", "system"), touch),
        "builtins.eval": _call(_global("builtins", "eval"), open_it),
        "builtins.exec": _call(_global("builtins", "exec"), open_it),
        "builtins.open": _call(_global("builtins", "open"), _str(m), _str("w")),
        "subprocess.call": _call(_global("subprocess", "call"), b"(" + _str("touch") + _str(m) + b"l"),
        "getattr chain": _call(_call(_global("builtins", "getattr"),
                                     _call(_global("builtins", "__import__"), _str("os")), _str("system")), touch),
        "importlib": _call(_call(_global("operator", "methodcaller"), _str("system"), touch),
                           _call(_global("importlib", "import_module"), _str("os"))),
        # protocol 4 resolves dotted names (STACK_GLOBAL): sys.modules reached through collections
        "dotted name": _call(_call(_global("operator", "methodcaller"), _str("system"), touch),
                             _call(_str("collections") + _str("_sys.modules.get") + b"\x93", _str("os"))),
        "nested pickle": _call(_global("pickle", "loads"), b"C" + bytes([len(inner)]) + inner if len(inner) < 256
                               else b"B" + struct.pack("<I", len(inner)) + inner),
        "torch.storage._load_from_bytes": _call(_global("torch.storage", "_load_from_bytes"),
                                                b"B" + struct.pack("<I", len(torch_inner.getvalue())) + torch_inner.getvalue()),
        "INST opcode": b"(" + touch + b"ios\nsystem\n",
        "OBJ opcode": b"(" + _global("os", "system") + touch + b"o",
    }


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _pickle(expr, proto=4):
    return b"\x80" + bytes([proto]) + expr + b"."


class Raw:
    """A pickle expression to put as-is into a file written by `_Writer`."""

    def __init__(self, expr):
        self.expr = expr


class _Writer(torchfile._TorchWriter):
    def _pickle(self, obj, out):
        if isinstance(obj, Raw):
            out += obj.expr
        else:
            super()._pickle(obj, out)


def tensor_expr(evil=None, field=None, legacy=False):
    """A float32 tensor of 3 elements over storage '0', with `field` replaced (legacy: the storage
    reference ends with a view, None)."""
    fields = {"type": _global("torch", "FloatStorage"), "key": _str("0"), "location": _str("cpu"),
              "numel": b"K\x03", "offset": b"K\x00", "size": b"(K\x03t", "stride": b"(K\x01t",
              "requires_grad": b"\x89", "hooks": _global("collections", "OrderedDict") + b")R"}
    if field:
        fields[field] = evil
    pid = (b"(" + _str("storage") + b"".join(fields[k] for k in ("type", "key", "location", "numel"))
           + (b"N" if legacy else b"") + b"tQ")
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), pid,
                 *(fields[k] for k in ("offset", "size", "stride", "requires_grad", "hooks")))


STORAGE = np.arange(3, dtype="<f4").tobytes()


def checkpoint_obj(sd_value=None, sd_key=None, where="sd", legacy=False):
    """A LIIF envelope of an `mlp` with one tensor; an expression (Raw) goes where asked."""
    evil = Raw(sd_value) if sd_value is not None else None
    sd = {"w": Raw(tensor_expr(legacy=legacy))}
    obj = {"model": {"name": "mlp", "args": {"in_dim": 3, "out_dim": 1, "hidden_list": []}, "sd": sd},
           "optimizer": {"name": "adam", "args": {"lr": 1e-4}, "sd": {"state": {}, "param_groups": []}},
           "epoch": 1, "liif": {"history": []}}
    if evil is not None:
        {"sd": sd, "args": obj["model"]["args"], "optimizer": obj["optimizer"]["sd"]["state"],
         "extra": obj["liif"], "epoch": obj}[where]["evil" if where != "epoch" else "epoch"] = evil
    if sd_key is not None:
        sd[Raw(sd_key)] = Raw(tensor_expr())
    return obj


def zip_file(path, data_pkl, storage=STORAGE, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl, compress_type=compress)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/data/0", storage, compress_type=compress)
        z.writestr("archive/version", b"3\n")
    return path


def data_pkl(obj):
    out = bytearray(b"\x80\x02")
    _Writer("archive")._pickle(obj, out)
    return bytes(out + b".")


def legacy_file(path, slots=None, numel=3):
    """torch's legacy format: five pickles (magic, protocol, system info, object, storage keys),
    then each storage as an int64 element count and its bytes; `slots` replaces pickles by index."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
             data_pkl(checkpoint_obj(legacy=True)), pickle.dumps(["0"], protocol=2)]
    for i, expr in (slots or {}).items():
        parts[i] = expr
    path.write_bytes(b"".join(parts) + struct.pack("<q", numel) + STORAGE)
    return path


ZIP_SLOTS = ["data.pkl", "sd value", "sd key", "args", "optimizer", "extra", "epoch", "storage type",
             "storage key", "storage location", "storage numel", "tensor offset", "tensor size",
             "tensor stride", "tensor hooks"]
LEGACY_SLOTS = ["magic", "protocol", "sys_info", "object", "storage keys"]


def crafted_file(tmp_path, fmt, slot, expr):
    path = tmp_path / "evil.pth"
    tensor_fields = {"storage type": "type", "storage key": "key", "storage location": "location",
                     "storage numel": "numel", "tensor offset": "offset", "tensor size": "size",
                     "tensor stride": "stride", "tensor hooks": "hooks"}
    if fmt == "zip":
        if slot == "data.pkl":
            return zip_file(path, _pickle(expr))
        if slot in tensor_fields:
            return zip_file(path, data_pkl(checkpoint_obj(tensor_expr(expr, tensor_fields[slot]))))
        if slot == "sd key":
            return zip_file(path, data_pkl(checkpoint_obj(sd_key=expr)))
        where = {"sd value": "sd", "args": "args", "optimizer": "optimizer", "extra": "extra", "epoch": "epoch"}[slot]
        return zip_file(path, data_pkl(checkpoint_obj(expr, where=where)))
    index = LEGACY_SLOTS.index(slot)
    if slot == "object":
        return legacy_file(path, {3: data_pkl(checkpoint_obj(expr, legacy=True))})
    return legacy_file(path, {index: _pickle(expr, 2)})


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a checkpoint ran code"


NAMES = list(payloads("m"))


def _assert_refused(path, marker):
    with pytest.raises(CheckpointError) as err:
        checkpoint.read(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not marker.exists(), "a checkpoint ran code"


def test_the_valid_crafted_files_load(tmp_path):
    """The files below differ from these only by the payload: the craft itself is right (torch agrees)."""
    for path in (zip_file(tmp_path / "ok.pth", data_pkl(checkpoint_obj())), legacy_file(tmp_path / "legacy.pth")):
        ours, theirs = checkpoint.read(str(path)), torch.load(path, weights_only=True)
        np.testing.assert_array_equal(ours["model"]["sd"]["w"], [0, 1, 2])
        assert theirs["model"]["sd"]["w"].tolist() == [0, 1, 2] and theirs["epoch"] == ours["epoch"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_each_payload_is_live(tmp_path, name):
    """Control: plain pickle runs every payload (so their absence below means refusal, not a dud)."""
    target = tmp_path / "PWNED"
    try:
        pickle.loads(_pickle(payloads(target)[name]))
    except Exception:
        pass  # a payload may fail after it ran; only its effect matters here
    assert target.exists(), name


@pytest.mark.parametrize("slot", ZIP_SLOTS)
@pytest.mark.parametrize("name", NAMES)
def test_zip_checkpoint_never_runs_code(tmp_path, marker, name, slot):
    _assert_refused(crafted_file(tmp_path, "zip", slot, payloads(marker)[name]), marker)


@pytest.mark.parametrize("slot", LEGACY_SLOTS)
@pytest.mark.parametrize("name", NAMES)
def test_legacy_checkpoint_never_runs_code(tmp_path, marker, name, slot):
    _assert_refused(crafted_file(tmp_path, "legacy", slot, payloads(marker)[name]), marker)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_saved_malicious_object_is_refused(tmp_path, marker, zipped):
    """The same through torch.save itself: an object whose __reduce__ is os.system, in the state dict."""
    path = tmp_path / "evil.pth"
    torch.save({"model": {"name": "mlp", "args": {}, "sd": {"w": torch.zeros(3), "x": _Reduce(os.system, (f"touch '{marker}'",))}}},
               path, _use_new_zipfile_serialization=zipped)
    _assert_refused(path, marker)


def test_extension_registry_is_never_consulted(tmp_path, marker):
    """The EXT opcodes name a global by a number registered with copyreg, and pickle caches the
    lookup process-wide: primed here by a plain unpickling, as another library could have done."""
    code = 0x7ABC
    copyreg.add_extension("os", "system", code)
    try:
        pickle.loads(b"\x80\x02\x83" + struct.pack("<H", code) + b".")  # fills copyreg's cache (runs nothing)
        ext = b"\x83" + struct.pack("<H", code)  # EXT2
        live = tmp_path / "live"
        pickle.loads(_pickle(ext + b"(" + _str(f"touch '{live}'") + b"tR", 2))
        assert live.exists()  # control: plain pickle runs it
        expr = ext + b"(" + _str(f"touch '{marker}'") + b"tR"
        _assert_refused(zip_file(tmp_path / "ext.pth", _pickle(expr, 2)), marker)
        _assert_refused(legacy_file(tmp_path / "ext-legacy.pth", {0: _pickle(expr, 2)}), marker)
    finally:
        copyreg.remove_extension("os", "system", code)


@pytest.mark.parametrize("case", ["state on a storage type", "state on a tuple", "OrderedDict state from os"])
def test_object_state_is_refused(tmp_path, marker, case):
    """BUILD (an object's __setstate__/__dict__) is refused on anything but an OrderedDict."""
    expr = {"state on a storage type": _global("torch", "FloatStorage") + b"}" + _str("dtype") + _str("x") + b"sb",
            "state on a tuple": b"(K\x01t}b",
            "OrderedDict state from os": _global("collections", "OrderedDict") + b")R"
            + _call(_global("os", "system"), _str(f"touch '{marker}'")) + b"b"}[case]
    _assert_refused(zip_file(tmp_path / "state.pth", _pickle(expr, 2)), marker)


def test_ordereddict_metadata_is_dropped(tmp_path):
    """What torch really writes (a state_dict's _metadata as BUILD state) loads, and the state is not kept."""
    expr = _global("collections", "OrderedDict") + b")R}" + _str("_metadata") + b"}sb"
    path = zip_file(tmp_path / "meta.pth", _pickle(expr, 2))
    assert torchfile.load(str(path)) == {} and not hasattr(torchfile.load(str(path)), "_metadata")


@pytest.mark.parametrize("field,expr", [
    ("size", b"(M\xe8\x03t"),            # 1000 elements over a storage of 3
    ("stride", b"(J\x00\x00\x00\x10t"),  # a stride far outside the storage
    ("offset", b"J\x00\x00\x00\x10"),    # an offset far outside the storage
    ("size", b"(J\xff\xff\xff\xfft"),    # a negative size
    ("stride", b"(J\xff\xff\xff\xfft"),  # a negative stride
    ("numel", b"J\x00\x00\x00\x10"),     # more elements than the storage's bytes
    ("size", b"(K\x03K\x01t"),           # size and stride of different lengths
])
def test_tensor_views_stay_inside_their_storage(tmp_path, field, expr):
    """A tensor is a view of the file's bytes: a crafted size/stride/offset must not read other memory."""
    _assert_refused(zip_file(tmp_path / "view.pth", data_pkl(checkpoint_obj(tensor_expr(expr, field)))), tmp_path / "none")


def test_legacy_sizes_are_checked_before_allocating(tmp_path):
    path = tmp_path / "huge.pth"
    huge = tensor_expr(b"\x8a\x06" + (2 ** 45).to_bytes(6, "little"), "numel", legacy=True)  # 2**45 floats: 128 TiB
    legacy_file(path, {3: data_pkl({"model": {"name": "mlp", "args": {}, "sd": {"w": Raw(huge)}}})})
    _assert_refused(path, tmp_path / "none")
    _assert_refused(legacy_file(tmp_path / "short.pth", numel=2), tmp_path / "none")  # storage count differs


@pytest.mark.parametrize("case", ["empty", "text", "truncated zip", "truncated legacy", "compressed", "no data.pkl",
                                  "storage missing", "deep nesting", "bare storage", "a folder", "not there"])
def test_malformed_files_are_one_line_errors(tmp_path, case):
    path = tmp_path / "bad.pth"
    good = data_pkl(checkpoint_obj())
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a checkpoint at all")
    elif case == "truncated zip":
        zip_file(path, good)
        path.write_bytes(path.read_bytes()[:200])
    elif case == "truncated legacy":
        legacy_file(path)
        path.write_bytes(path.read_bytes()[:-5])
    elif case == "compressed":
        zip_file(path, good, compress=zipfile.ZIP_DEFLATED)
    elif case == "no data.pkl":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/other.pkl", good)
    elif case == "storage missing":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", good)
    elif case == "deep nesting":
        zip_file(path, _pickle(b"]" * 200000 + b"a" * 199999, 2))
    elif case == "bare storage":
        zip_file(path, _pickle(b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu")
                               + b"K\x03tQ", 2))
    elif case == "a folder":
        path.mkdir()
    _assert_refused(path, tmp_path / "none")


def test_non_tensor_state_dict_entries_are_refused(tmp_path):
    obj = checkpoint_obj()
    obj["model"]["sd"]["w"] = "not a tensor"
    _assert_refused(zip_file(tmp_path / "str.pth", data_pkl(obj)), tmp_path / "none")


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=[
    pytest.mark.jittor, pytest.mark.skipif(not HAS_JITTOR, reason="jittor is not installed")])])
@pytest.mark.parametrize("fmt,slot", [("zip", "data.pkl"), ("zip", "sd value"), ("legacy", "magic"),
                                      ("legacy", "object"), ("legacy", "storage keys")])
def test_load_model_refuses_on_both_frameworks(tmp_path, marker, framework, fmt, slot):
    path = crafted_file(tmp_path, fmt, slot, payloads(marker)["os.system"])
    with pytest.raises(CheckpointError):
        liif.load_model(str(path), framework=framework, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=[
    pytest.mark.jittor, pytest.mark.skipif(not HAS_JITTOR, reason="jittor is not installed")])])
@pytest.mark.parametrize("fmt,slot", [("zip", "sd value"), ("legacy", "sys_info")])
def test_cli_refuses_with_one_line_and_exit_2(tmp_path, marker, framework, fmt, slot):
    """task=test, the CLI's path after composition (in process)."""
    from conftest import compose, run_task_with_overrides
    path = crafted_file(tmp_path, fmt, slot, payloads(marker)["builtins.exec"])
    status, err = run_task_with_overrides(compose("task=test", f"framework={framework}", "device=cpu"),
                                          f"checkpoint={path}", f"output_dir={tmp_path / 'run'}")
    assert status == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a readable checkpoint" in lines[0], err
    assert "Traceback" not in err and not marker.exists()
