"""torch's checkpoint file format, read and written with NumPy only (no torch, no code run).

    obj = torchfile.load(path)     # a torch.save file (zip, or the legacy pre-1.6 format): tensors as numpy
    torchfile.save(obj, file)      # the zip format; torch.load(path, weights_only=True) reads it back

Both frameworks read and write checkpoints through this module (`liif.models.checkpoint`). It is
hand-written, not a library's: `torch.load` needs torch, which a Jittor install need not
have, and Jittor's reader of the format (`jittor_utils.load_pytorch`) resolves any name the file's
pickle asks for, so loading a file may run any code it holds.

Safety: a checkpoint is untrusted input, and a pickle is a program. Every pickle in the file (the
zip's data.pkl; the legacy format's magic number, protocol, system info, object and storage keys)
goes through `_RestrictedUnpickler`, which resolves only the names in `ALLOWED_GLOBALS` (torch's
tensor rebuilders and storage types, mapped to NumPy stand-ins here, and plain containers), takes
state (the BUILD opcode) only for an OrderedDict (a state_dict's `_metadata`, dropped) and checks
every storage reference and tensor view against the bytes actually in the file. Anything else is a
`TorchFileError`, raised before any object named in the file is called.
"""
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np


class TorchFileError(Exception):
    """The file is not a torch checkpoint this module can read safely; the message says why."""


_STORAGE_DTYPES = {  # torch's typed-storage class names, still written by torch.save
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_STORAGE_NAMES = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001


# --- reading ---------------------------------------------------------------------------------

class _StorageType:
    """What `torch.FloatStorage` & co. stand for here: the element type of a storage."""

    def __init__(self, storage_name):
        self.name = storage_name
        self.dtype = np.dtype(_STORAGE_DTYPES[storage_name]).newbyteorder("<")


def _int(x, what):
    if type(x) is not int or x < 0:  # noqa: E721  (bool is not a size)
        raise TorchFileError(f"bad {what} in a tensor: {x!r}")
    return x


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """torch._utils._rebuild_tensor(_v2): a view into a storage, checked to lie inside it."""
    if not isinstance(storage, _Storage):
        raise TorchFileError("a tensor without a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise TorchFileError("a tensor with a bad size or stride")
    offset = _int(storage_offset, "storage offset")
    size = tuple(_int(n, "size") for n in size)
    stride = tuple(_int(s, "stride") for s in stride)
    flat = storage.array
    if any(n == 0 for n in size):
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise TorchFileError(f"a tensor reaches element {last} of a storage of {flat.size}")
    return np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride),
                                           writeable=False)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_):
    if not isinstance(data, np.ndarray):
        raise TorchFileError("a parameter that is not a tensor")
    return data


class _Storage:
    """A storage's elements (a flat NumPy array); only `persistent_load` makes these."""

    def __init__(self, array):
        self.array = array


def _size(*items):  # torch.Size((2, 3)) is pickled as REDUCE(torch.Size, ((2, 3),))
    return tuple(*items)


ALLOWED_GLOBALS = {  # (module, name) -> what it means here; what a checkpoint holds, nothing more
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): _size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every way to reach code closed: globals only from
    ALLOWED_GLOBALS, persistent ids only through `load_storage`, BUILD only on an OrderedDict."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data, load_storage=None):
        super().__init__(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[module, name]
        except (KeyError, TypeError):
            raise TorchFileError(f"the file names {module}.{name}, which a checkpoint never holds "
                                 "(refused: it could run code)") from None

    def persistent_load(self, pid):
        if self._load_storage is None or not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchFileError(f"unsupported persistent id {str(pid)[:80]}")
        storage_type, key, location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(location, str):
            raise TorchFileError(f"bad storage reference {str(pid)[:80]}")
        return _Storage(self._load_storage(storage_type, key, _int(numel, "storage size"), *pid[5:]))

    def _build(self):
        state = self.stack.pop()
        if type(self.stack[-1]) is not collections.OrderedDict or not isinstance(state, dict):
            raise TorchFileError("the file sets the state of an object (refused: only a state_dict's metadata may be set)")
        # a state_dict's `_metadata` (module versions): not needed, dropped

    def _extension(self):  # the extension registry is process-wide and caches past lookups: never
        raise TorchFileError("the file uses the pickle extension registry (refused: it could reach code)")

    dispatch[pickle.BUILD[0]] = _build
    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _extension
    del _opcode


def _unpickle(data, load_storage=None):
    return _RestrictedUnpickler(data, load_storage).load()


def load(path):
    """Read a torch checkpoint (zip, or the legacy pre-1.6 format) with every tensor as its own
    writable NumPy array. Raises TorchFileError for anything else (and for anything unsafe)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = _load_zip(data) if data[:4] == b"PK\x03\x04" else _load_legacy(data)
        return _own_arrays(obj)
    except (TorchFileError, MemoryError):
        raise
    except Exception as e:  # a malformed file fails anywhere: zip, pickle opcodes, sizes
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise TorchFileError(f"{type(e).__name__}: {reason}") from None


def _load_zip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = set(z.namelist())
        pkl = next((n for n in sorted(names) if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise TorchFileError("a zip archive without <name>/data.pkl: not a torch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        little = z.read(prefix + "byteorder").decode().strip() != "big" if prefix + "byteorder" in names else True
        storages = {}

        def read(name):
            info = z.getinfo(name)
            if info.compress_type != zipfile.ZIP_STORED:  # torch never compresses; no zip bombs either
                raise TorchFileError(f"compressed entry {name}: not torch's format")
            return z.read(info)

        def load_storage(storage_type, key, numel, *_):
            if key not in storages:
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise TorchFileError(f"storage {key[:40]!r} is missing from the archive")
                dtype = storage_type.dtype if little else storage_type.dtype.newbyteorder(">")
                storages[key] = np.frombuffer(read(name), dtype=dtype, count=numel)
            if storages[key].size != numel or storages[key].dtype.newbyteorder("<") != storage_type.dtype:
                raise TorchFileError(f"storage {key[:40]!r} is referenced with two types or sizes")
            return storages[key]

        return _unpickle(read(pkl), load_storage)


def _load_legacy(data):
    f = io.BytesIO(data)
    if _unpickle(f) != _LEGACY_MAGIC:
        raise TorchFileError("neither a zip archive nor torch's legacy format: not a torch checkpoint")
    if _unpickle(f) != _LEGACY_PROTOCOL:
        raise TorchFileError("unsupported legacy torch checkpoint protocol")
    sys_info = _unpickle(f)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise TorchFileError("big-endian legacy checkpoints are not supported")
    storages = {}  # root key -> array, filled from the raw bytes after the object's pickle

    def load_storage(storage_type, root_key, numel, view_metadata=None, *_):
        if root_key not in storages:
            if numel * storage_type.dtype.itemsize > len(data):
                raise TorchFileError(f"storage {root_key[:40]!r} is larger than the file")
            storages[root_key] = np.zeros(numel, dtype=storage_type.dtype)
        root = storages[root_key]
        if root.dtype != storage_type.dtype or root.size != numel:
            raise TorchFileError(f"storage {root_key[:40]!r} is referenced with two types or sizes")
        if view_metadata is None:
            return root
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
            raise TorchFileError("bad storage view")
        _view_key, offset, view_size = view_metadata
        if _int(offset, "view offset") + _int(view_size, "view size") > numel:
            raise TorchFileError("a storage view outside its storage")
        return root[offset:offset + view_size]

    obj = _unpickle(f, load_storage)
    keys = _unpickle(f)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise TorchFileError("the storage list does not match the tensors")
    for key in keys:  # each storage: int64 element count, then the raw bytes
        root = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(root.nbytes)
        if numel != root.size or len(raw) != root.nbytes:
            raise TorchFileError(f"storage {key[:40]!r} is truncated or has the wrong size")
        root[:] = np.frombuffer(raw, dtype=root.dtype)
    return obj


def _own_arrays(obj):
    """Plain dicts, and every tensor as its own writable, contiguous, native-order array."""
    if isinstance(obj, np.ndarray):
        return np.array(obj, dtype=obj.dtype.newbyteorder("="), order="C", copy=True)
    if isinstance(obj, _Storage):
        raise TorchFileError("a bare storage outside a tensor")
    if isinstance(obj, dict):
        return {k: _own_arrays(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_own_arrays(v) for v in obj)
    return obj


# --- writing ---------------------------------------------------------------------------------

def save(obj, file):
    """Write `obj` (NumPy arrays in dicts/lists/tuples of str/int/float/bool/None) to `file` (a path
    or a binary file object) in torch's zip format; `torch.load(path, weights_only=True)` reads it
    back with every array as a tensor."""
    name = os.path.splitext(os.path.basename(file))[0] if isinstance(file, (str, os.PathLike)) else "archive"
    _TorchWriter(str(name)).save(obj, file)


class _TorchWriter:
    """torch.save's zip format, written by hand: `<name>/data.pkl` (pickle protocol 2, tensors as
    `torch._utils._rebuild_tensor_v2` over persistent storages), `<name>/data/<key>` (raw little-endian
    bytes, 64-byte aligned like torch), `<name>/byteorder`, `<name>/version`."""

    def __init__(self, archive):
        self.archive = archive if archive.isidentifier() else "archive"
        self.storages = []

    def save(self, obj, file):
        out = bytearray(b"\x80\x02")
        self._pickle(obj, out)
        out += b"."
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as z:
            self._write(z, "data.pkl", bytes(out))
            self._write(z, "byteorder", b"little")
            for key, array in enumerate(self.storages):
                self._write(z, f"data/{key}", array.tobytes(), align=64)
            self._write(z, "version", b"3\n")

    def _write(self, z, name, payload, align=0):
        info = zipfile.ZipInfo(f"{self.archive}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        if align:  # pad the local header's extra field so that the data starts on a multiple of `align`
            start = z.fp.tell() + 30 + len(info.filename.encode()) + 4
            info.extra = b"FB" + struct.pack("<H", (-start) % align) + b"Z" * ((-start) % align)
        z.writestr(info, payload)

    def _pickle(self, obj, out):
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, np.ndarray):
            self._tensor(obj, out)
        elif isinstance(obj, np.generic):  # numpy scalars: as the matching python value
            self._pickle(obj.item(), out)
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                out += b"K" + struct.pack("<B", obj)
            elif 0 <= obj < 65536:
                out += b"M" + struct.pack("<H", obj)
            elif -2 ** 31 <= obj < 2 ** 31:
                out += b"J" + struct.pack("<i", obj)
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                out += b"\x8a" + struct.pack("<B", len(raw)) + raw
        elif isinstance(obj, float):
            out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            raw = obj.encode("utf-8")
            out += b"X" + struct.pack("<I", len(raw)) + raw
        elif isinstance(obj, dict):
            out += b"}"
            if obj:
                out += b"("
                for k, v in obj.items():
                    self._pickle(k, out)
                    self._pickle(v, out)
                out += b"u"
        elif isinstance(obj, list):
            out += b"]"
            if obj:
                out += b"("
                for v in obj:
                    self._pickle(v, out)
                out += b"e"
        elif isinstance(obj, tuple):
            self._tuple(obj, out)
        else:
            raise TypeError(f"a checkpoint cannot store a {type(obj).__name__}")

    def _tuple(self, items, out):
        if not items:
            out += b")"
            return
        out += b"("
        for v in items:
            self._pickle(v, out)
        out += b"t"

    def _tensor(self, array, out):
        if array.dtype.newbyteorder("=") not in _STORAGE_NAMES:
            raise TypeError(f"a checkpoint cannot store a {array.dtype} array")
        array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # (ascontiguousarray makes 0-d 1-d)
        key = len(self.storages)
        self.storages.append(array)
        stride, acc = [], 1
        for n in reversed(array.shape):
            stride.insert(0, acc)
            acc *= n
        out += b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(X\x07\x00\x00\x00storage"  # persistent id: ('storage', type, key, location, numel)
        out += f"ctorch\n{_STORAGE_NAMES[array.dtype.newbyteorder('=')]}\n".encode()
        self._pickle(str(key), out)
        self._pickle("cpu", out)
        self._pickle(int(array.size), out)
        out += b"tQ"
        self._pickle(0, out)                      # storage_offset
        self._tuple(tuple(int(n) for n in array.shape), out)
        self._tuple(tuple(stride), out)
        out += b"\x89"                            # requires_grad
        out += b"ccollections\nOrderedDict\n)R"  # backward_hooks
        out += b"tR"
