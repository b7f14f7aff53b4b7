"""torch's checkpoint file format, read and written with NumPy only (no torch, no code run).

    obj = torchfile.load(path)     # a torch.save file (zip, or the legacy pre-1.6 format): tensors as numpy
    torchfile.save(obj, file)      # the zip format; torch.load(path, weights_only=True) reads it back

Both frameworks read and write checkpoints through this module (`liif.models.checkpoint`). It is
hand-written, not a library's: `torch.load` needs torch, which a Jittor install need not
have, and Jittor's reader of the format (`jittor_utils.load_pytorch`) resolves any name the file's
pickle asks for, so loading a file may run any code it holds.

A checkpoint is untrusted input: anything wrong with it is a `TorchFileError` saying what, raised
before the harm is done. Two kinds of harm:

- Code. A pickle is a program. Every pickle in the file (the zip's data.pkl; the legacy format's
  magic number, protocol, system info, object and storage keys) goes through `_RestrictedUnpickler`,
  which resolves only the names in `ALLOWED_GLOBALS` (torch's tensor rebuilders and storage types,
  mapped to NumPy stand-ins here, and plain containers), takes state (the BUILD opcode) only for an
  OrderedDict (a state_dict's `_metadata`, dropped) and checks every storage reference and tensor
  view against the bytes actually in the file.
- Memory and time: a small file must not ask for much more than its own size.
  - The file is recognised from its first bytes and, a zip, from its central directory
    (`liif.io.ziparchive`: the declared sizes must fit the file) before its body is read.
  - Each storage is read once, however many tensors refer to it, and a tensor is a view into its
    storage, as torch's loader makes it (a view's shape may hold far more elements than its
    storage: it is never copied here).
  - A pickle is at most MAX_PICKLE_BYTES (unpickling holds up to ~50 times its size).
  - Dict keys and set elements are checked before anything hashes them (`_Keys`).
  - The object is walked once per container, not once per path (memo references make a graph:
    a few KB unfold into 2**60 paths), and refused if written out as a tree it would be far
    larger than its pickle, since code after this walks it path by path (json, comparisons).
"""
import collections
import io
import math
import os
import pickle
import stat
import struct
import sys
import zipfile

import numpy as np

from liif.io.ziparchive import ArchiveError, ZipArchive


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

# Bounds no checkpoint comes near (a LIIF checkpoint's data.pkl is ~14 KB, its zip ~90 entries, its
# object 6 levels deep) that keep a crafted file's demands a small multiple of its size.
MAX_PICKLE_BYTES = 8 << 20     # one pickle: unpickling holds up to ~50 bytes of objects per byte
MAX_DEPTH = 64                 # nesting of containers in the object
MAX_KEY_DEPTH = 16             # nesting of tuples in a dict key or set element
MAX_SAME_HASH = 32             # distinct keys of one hash value
UNFOLD_FACTOR = 4              # the object written out as a tree, against its pickle's size


# --- the pickle's vocabulary -----------------------------------------------------------------

class _StorageType:
    """What `torch.FloatStorage` & co. stand for here: the element type of a storage."""

    def __init__(self, storage_name):
        self.name = storage_name
        self.dtype = np.dtype(_STORAGE_DTYPES[storage_name])  # native order: storages are read into it


def _int(x, what):
    if type(x) is not int:  # noqa: E721  (bool is not a size)
        raise TorchFileError(f"bad {what} in a tensor: a {type(x).__name__}")
    if not 0 <= x < 2 ** 63:  # torch's sizes are int64; and no arithmetic on ints of a million digits
        raise TorchFileError(f"bad {what} in a tensor: {'negative' if x < 0 else 'over 2**63'}")
    return x


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """torch._utils._rebuild_tensor(_v2): a view into a storage, checked to lie inside it (never a
    copy: a stride-0 tensor of 10**12 elements over one float stays one float)."""
    if not isinstance(storage, _Storage):
        raise TorchFileError("a tensor without a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride) or len(size) > 32:
        raise TorchFileError("a tensor with a bad size or stride")
    offset = _int(storage_offset, "storage offset")
    size = tuple(_int(n, "size") for n in size)
    stride = tuple(_int(s, "stride") for s in stride)
    flat = storage.array
    if any(n == 0 for n in size):
        return np.zeros(size, dtype=flat.dtype)
    if math.prod(size) >= 2 ** 62:
        raise TorchFileError(f"a tensor of {math.prod(size)} elements")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise TorchFileError(f"a tensor reaches element {last} of a storage of {flat.size}")
    return np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride))


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


class _Keys:
    """Every dict key and set element of one file, checked before anything hashes it: a tuple
    nested deeper than MAX_KEY_DEPTH (hashing recurses in C, unguarded: a few MB of TUPLE1 opcodes
    overflow the stack), or more than MAX_SAME_HASH distinct keys of one hash value (ints that
    differ by multiples of 2**61 - 1 all hash alike, and inserting n of them takes n**2 steps)."""

    def __init__(self):
        self.by_hash = {}

    def check(self, key):
        self._depth(key, 0)
        seen = self.by_hash.setdefault(hash(key), [])
        if key not in seen:
            if len(seen) >= MAX_SAME_HASH:
                raise TorchFileError(f"more than {MAX_SAME_HASH} dict keys of one hash value (refused: "
                                     "such keys make a dict take quadratic time)")
            seen.append(key)
        return key

    def _depth(self, key, depth):
        if type(key) is tuple:  # noqa: E721  (frozensets hash their elements' cached hashes)
            if depth >= MAX_KEY_DEPTH:
                raise TorchFileError(f"a dict key nested deeper than {MAX_KEY_DEPTH} levels")
            for item in key:
                self._depth(item, depth + 1)


_CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
               ("builtins", "frozenset"): frozenset}

ALLOWED_GLOBALS = {  # (module, name) -> what it means here; what a checkpoint holds, nothing more
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _size,
    **_CONTAINERS,  # called through `_RestrictedUnpickler._container`, which checks their keys
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every way to reach code closed: globals only from
    ALLOWED_GLOBALS, persistent ids only through `load_storage`, BUILD only on an OrderedDict;
    and every opcode that hashes a key checks it first (`_Keys`)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, keys, load_storage=None):
        super().__init__(file, encoding="utf-8")
        self._keys = keys
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            found = ALLOWED_GLOBALS[module, name]
        except (KeyError, TypeError):
            raise TorchFileError(f"the file names {module}.{name}, which a checkpoint never holds "
                                 "(refused: it could run code)") from None
        return self._container(found) if (module, name) in _CONTAINERS else found

    def _container(self, kind):
        """OrderedDict, set or frozenset, called with its items' keys checked."""
        def build(items=()):
            items = list(items)
            for item in items:  # an OrderedDict's items are (key, value) pairs
                self._keys.check(item[0] if kind is collections.OrderedDict else item)
            return kind(items)
        return build

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

    def _buffer(self):  # protocol 5's out-of-band buffers; BYTEARRAY8 allocates its declared size first
        raise TorchFileError("the file holds protocol-5 buffers, which torch never writes")

    def _setitem(self):
        value = self.stack.pop()
        key = self._keys.check(self.stack.pop())
        self.stack[-1][key] = value

    def _setitems(self):
        items = self.pop_mark()
        for i in range(0, len(items), 2):
            self.stack[-1][self._keys.check(items[i])] = items[i + 1]

    def _dict(self):
        items = self.pop_mark()
        self.append({self._keys.check(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def _additems(self):
        items = self.pop_mark()
        for item in items:
            self.stack[-1].add(self._keys.check(item))

    def _frozenset(self):
        items = self.pop_mark()  # first: it changes what self.append appends to
        self.append(frozenset(self._keys.check(item) for item in items))

    def _put(self):  # the memo is a dict too: text PUT takes any integer, so bound it like BINPUT's
        index = int(self.readline()[:-1])
        if not 0 <= index < 2 ** 32:
            raise TorchFileError("a memo index outside 0 .. 2**32")
        self.memo[index] = self.stack[-1]

    dispatch[pickle.BUILD[0]] = _build
    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _extension
    for _opcode in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_opcode[0]] = _buffer
    dispatch[pickle.SETITEM[0]] = _setitem
    dispatch[pickle.SETITEMS[0]] = _setitems
    dispatch[pickle.DICT[0]] = _dict
    dispatch[pickle.ADDITEMS[0]] = _additems
    dispatch[pickle.FROZENSET[0]] = _frozenset
    dispatch[pickle.PUT[0]] = _put
    del _opcode


def _unpickle(file, keys, load_storage=None):
    return _RestrictedUnpickler(file, keys, load_storage).load()


# --- reading ---------------------------------------------------------------------------------

def load(path):
    """Read a torch checkpoint (zip, or the legacy pre-1.6 format). Each storage is one NumPy array
    (native byte order, writable, read once), and each tensor a view into its storage, as torch's
    loader shares them: tensors that share a storage share memory. Raises TorchFileError for
    anything else (and for anything unsafe)."""
    # O_NONBLOCK: a fifo opens without waiting for a writer, and is refused below
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TorchFileError("not a regular file")
        try:
            if f.read(4) == b"PK\x03\x04":
                obj, pickle_bytes = _load_zip(f, st.st_size)
            else:
                f.seek(0)
                obj, pickle_bytes = _load_legacy(f, st.st_size)
            return _plain(obj, UNFOLD_FACTOR * pickle_bytes + (1 << 20))
        except (TorchFileError, MemoryError):
            raise
        except ArchiveError as e:
            raise TorchFileError(str(e)) from None
        except Exception as e:  # a malformed file fails anywhere: pickle opcodes, sizes
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise TorchFileError(f"{type(e).__name__}: {reason}") from None


def _load_zip(f, file_size):
    archive = ZipArchive(f, file_size)
    names = archive.entries
    pkl = next((n for n in sorted(names) if n.endswith("/data.pkl") and n.count("/") == 1), None)
    if pkl is None:
        raise TorchFileError("a zip archive without <name>/data.pkl: not a torch checkpoint")
    pickle_bytes = names[pkl][1]
    if pickle_bytes > MAX_PICKLE_BYTES:
        raise TorchFileError(f"its data.pkl is {pickle_bytes} bytes, more than a checkpoint's "
                             f"{MAX_PICKLE_BYTES} (unpickling it could take ~50 times as much memory)")
    prefix = pkl[: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    big = byteorder in names and names[byteorder][1] < 16 and archive.read(byteorder).strip() == b"big"
    storages = {}

    def load_storage(storage_type, key, numel, *_):
        if key not in storages:
            name = f"{prefix}data/{key}"
            if name not in names:
                raise TorchFileError(f"storage {key[:40]!r} is missing from the archive")
            size = names[name][1]
            if size != numel * storage_type.dtype.itemsize:
                raise TorchFileError(f"storage {key[:40]!r} holds {size} bytes, not the {numel} elements of "
                                     f"{storage_type.dtype.itemsize} bytes its tensors declare")
            array = archive.read(name, into=np.empty(numel, dtype=storage_type.dtype))
            if big != (sys.byteorder == "big"):
                array.byteswap(inplace=True)
            storages[key] = array
        if storages[key].size != numel or storages[key].dtype != storage_type.dtype:
            raise TorchFileError(f"storage {key[:40]!r} is referenced with two types or sizes")
        return storages[key]

    return _unpickle(io.BytesIO(archive.read(pkl)), _Keys(), load_storage), pickle_bytes


class _PickleStream:
    """The file from its current position as one pickle of at most `limit` bytes (the legacy format
    is pickles and raw storages one after another: no size is known in advance)."""

    def __init__(self, f, limit):
        self.f, self.left = f, limit

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:  # a declared length is not read before it is refused
            raise TorchFileError(f"a pickle larger than {MAX_PICKLE_BYTES} bytes (more than a checkpoint's)")
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def readline(self):
        line = self.f.readline(self.left + 1)
        if len(line) > self.left:
            raise TorchFileError(f"a pickle larger than {MAX_PICKLE_BYTES} bytes (more than a checkpoint's)")
        self.left -= len(line)
        return line


def _load_legacy(f, file_size):
    keys, start = _Keys(), f.tell()

    def next_pickle(load_storage=None, limit=MAX_PICKLE_BYTES):
        return _unpickle(_PickleStream(f, limit), keys, load_storage)

    try:  # torch's magic number, pickled: 15 bytes. A file that is neither format stops here.
        magic = next_pickle(limit=64)
    except Exception:
        magic = None
    if magic != _LEGACY_MAGIC:
        raise TorchFileError("neither a zip archive nor torch's legacy format: not a torch checkpoint")
    if next_pickle() != _LEGACY_PROTOCOL:
        raise TorchFileError("unsupported legacy torch checkpoint protocol")
    sys_info = next_pickle()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise TorchFileError("big-endian legacy checkpoints are not supported")
    storages = {}  # root key -> array, filled from the raw bytes after the object's pickle
    allocated = 0

    def load_storage(storage_type, root_key, numel, view_metadata=None, *_):
        nonlocal allocated
        if root_key not in storages:
            # the storages follow the pickles: together they fit in what is left of the file
            allocated += numel * storage_type.dtype.itemsize
            if allocated > file_size - f.tell():
                raise TorchFileError(f"storage {root_key[:40]!r} does not fit in the file")
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

    obj = next_pickle(load_storage)
    storage_keys = next_pickle()
    pickle_bytes = f.tell() - start
    if not isinstance(storage_keys, list) or sorted(storage_keys) != sorted(storages):
        raise TorchFileError("the storage list does not match the tensors")
    for key in storage_keys:  # each storage: int64 element count, then the raw bytes
        root = storages[key]
        (numel,) = struct.unpack("<q", f.read(8).ljust(8, b"\xff"))
        if numel != root.size or f.readinto(memoryview(root.view(np.uint8))) != root.nbytes:
            raise TorchFileError(f"storage {key[:40]!r} is truncated or has the wrong size")
        if sys.byteorder == "big":  # the format is little-endian (checked above); storages are native
            root.byteswap(inplace=True)
    return obj, pickle_bytes


def _plain(obj, limit):
    """The object with plain containers (dict for OrderedDict, tuple for torch.Size) and no bare
    storage, walked once per container (a container met again is the same converted one).
    Refused: a container inside itself, nesting deeper than MAX_DEPTH, and an object whose tree
    (every shared part written out once per reference, a string counted by its length) exceeds
    `limit`: whatever walks the result path by path (json, comparisons) would take that long."""
    done, open_ = {}, set()  # id -> (converted, unfolded size); ids of containers being walked

    def walk(x, depth):
        if isinstance(x, _Storage):
            raise TorchFileError("a bare storage outside a tensor")
        if isinstance(x, (str, bytes)):
            return x, 1 + len(x)
        if not isinstance(x, (dict, list, tuple, set, frozenset)):
            return x, 1
        if id(x) in done:
            return done[id(x)]
        if id(x) in open_:
            raise TorchFileError("a container that contains itself")
        if depth >= MAX_DEPTH:
            raise TorchFileError(f"containers nested deeper than {MAX_DEPTH} levels")
        open_.add(id(x))
        unfolded = 1
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                (k, a), (v, b) = walk(k, depth + 1), walk(v, depth + 1)
                out[k] = v
                unfolded += a + b
        else:
            items = [walk(v, depth + 1) for v in x]
            unfolded += sum(n for _, n in items)
            out = [v for v, _ in items] if isinstance(x, list) else type(x)(v for v, _ in items)
        if unfolded > limit:
            raise TorchFileError(f"shared containers that unfold to more than {limit} items (refused: "
                                 "code that walks them path by path would take that long)")
        open_.discard(id(x))
        done[id(x)] = (out, unfolded)
        return out, unfolded

    return walk(obj, 0)[0]


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
