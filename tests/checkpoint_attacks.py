"""Crafted checkpoints that ask for far more memory or time than their size (issue 21), and a child
process that loads them under a memory cap. Shared by tests/unit/io/test_torchfile_bounds.py
(`liif.load_model`, both frameworks) and tests/cli/test_checkpoint_bounds.py (`task=demo`, `task=test`).

Each attack is a function writing a file to a path; `ATTACKS` maps its name to the outcome the reader
must give: `None` (a correct load: the model's weights are those of the clean checkpoint) or a
fragment of the one-line error. The pickles are written as torch.save writes them: protocol 2,
tensors as `torch._utils._rebuild_tensor_v2` over persistent storage ids, the memo (BINPUT/BINGET)
where one object is referred to twice.
"""
import functools
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
P61 = 2 ** 61 - 1  # ints that differ by a multiple of it hash alike

TINY = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}}}
SD_KEY = "encoder.head.0.weight"  # a weight of TINY: (8, 3, 3, 3)


# --- pickle expressions: each pushes one object -------------------------------------------------

def pstr(s):
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def memo_put(i):
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT: the memo, as pickle writes a second reference


def memo_get(i):
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def _int(v):
    if -2 ** 31 <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)  # BININT
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def tensor(key, numel, size, stride, offset=0, legacy=False):
    """A float32 tensor over the storage `key` (of `numel` elements), as torch.save writes one (the
    legacy format's storage reference ends with a view, None)."""
    pid = (b"(" + pstr("storage") + b"ctorch\nFloatStorage\n" + pstr(key) + pstr("cpu") + _int(numel)
           + (b"N" if legacy else b"") + b"tQ")
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(offset) + b"(" + b"".join(map(_int, size)) + b"t("
            + b"".join(map(_int, stride)) + b"t\x89ccollections\nOrderedDict\n)RtR")


class Raw:
    """A pickle expression placed as it is into the object `data_pkl` writes."""

    def __init__(self, expr):
        self.expr = expr


def data_pkl(obj):
    """`obj`'s pickle (protocol 2) as liif.io.torchfile.save writes it, Raw parts as they are; returns
    (the pickle, its arrays' bytes by storage key)."""
    from liif.io import torchfile

    class Writer(torchfile._TorchWriter):
        def _pickle(self, x, out):
            if isinstance(x, Raw):
                out += x.expr
            else:
                super()._pickle(x, out)

    writer, out = Writer("archive"), bytearray(b"\x80\x02")
    writer._pickle(obj, out)
    return bytes(out + b"."), {str(i): a.tobytes() for i, a in enumerate(writer.storages)}


def legacy_file(path, pkl, storages):
    """torch's legacy format: the magic number, protocol and system info pickled, the object's
    pickle `pkl`, the storage keys pickled, then each storage (bytes) after its int64 element count."""
    import pickle
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    keys = pickle.dumps(list(storages), protocol=2)
    body = b"".join(struct.pack("<q", len(raw) // 4) + raw for raw in storages.values())  # float32 storages
    Path(path).write_bytes(head + pkl + keys + body)
    return path


def write_zip(path, pkl, storages):
    """A checkpoint as torch writes it (stored entries under one folder)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", b"3\n")
    return path


def raw_zip(path, entries, records=None, count=None, cd_offset=None, zip64_count=None, prefix=b""):
    """A zip archive written byte by byte, so that its directory can lie. `prefix`: bytes that begin
    the body as they are; `entries`: [(name, bytes)], stored, after it; `records`: the directory's
    [(name, local header offset, size, crc)] (default: the true ones); `count`, `cd_offset`: what the
    end record says; `zip64_count`: a zip64 end record saying it."""
    body, true_records = bytearray(prefix), []
    for name, data in entries:
        raw, crc = name.encode(), zlib.crc32(data)
        true_records.append((name, len(body), len(data), crc))
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data), len(raw), 0)
        body += raw + data
    cd = bytearray()
    for name, offset, size, crc in (true_records if records is None else records):
        raw = name.encode()
        cd += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size, size, len(raw),
                          0, 0, 0, 0, 0, offset) + raw
    n = len(true_records if records is None else records)
    start = len(body) if cd_offset is None else cd_offset
    tail = b""
    if zip64_count is not None:
        record = len(body) + len(cd)
        tail = (struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, zip64_count, zip64_count, len(cd), start)
                + struct.pack("<4sIQI", b"PK\x06\x07", 0, record, 1))
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF) if count is None else count,
                      len(cd), min(start, 0xFFFFFFFF), 0)
    Path(path).write_bytes(bytes(body + cd + tail + end))
    return path


# --- the attacks ----------------------------------------------------------------------------------

def clean_envelope():
    """The clean checkpoint's object: TINY with seeded random weights, tensors as NumPy."""
    from liif.models import checkpoint
    rng = np.random.default_rng(0)
    sd = {k: (0.1 * rng.standard_normal(shape)).astype(np.float32) for k, shape in tiny_shapes().items()}
    return checkpoint.envelope(TINY, sd, epoch=3)


@functools.lru_cache(maxsize=1)
def tiny_shapes():
    """{key: shape} of TINY's state_dict (built with torch, which the tests have)."""
    from liif.inference.api import build_model
    model = build_model(TINY, framework="torch", device="cpu")
    return {k: v.shape for k, v in model.backend.state_dict_numpy(model.net).items()}


def clean(path):
    obj = clean_envelope()
    return write_zip(path, *data_pkl(obj))


def _with(path, where, expr, storages=None):
    """The clean checkpoint with `expr` as its training state ('extra', which loading ignores) or
    as the weight SD_KEY ('sd'); `storages`: extra {key: bytes}."""
    obj = clean_envelope()
    if where == "extra":
        obj["liif"] = Raw(expr)
    else:
        obj["model"]["sd"][SD_KEY] = Raw(expr)
    pkl, arrays = data_pkl(obj)
    return write_zip(path, pkl, {**arrays, **(storages or {})})


BIG = 4 << 20  # float32 elements of the shared storage: 16 MiB


def shared_references(path):
    """One 16 MiB storage, referred to 20000 times as one tensor (memo) and by 2000 views: a
    reader that copies each reference asks for 350 GB."""
    one = tensor("big", BIG, (BIG,), (1,))
    views = b"".join(tensor("big", BIG, (BIG - i,), (1,), offset=i) for i in range(2000))
    expr = b"](" + one + memo_put(0) + memo_get(0) * 19999 + views + b"e"
    return _with(path, "extra", expr, {"big": np.zeros(BIG, np.float32).tobytes()})


def _expanded():
    return tensor("one", 1, (10 ** 6, 10 ** 6), (0, 0))  # 10**12 elements over one float


def oversized_view_unused(path):
    """A view of 10**12 elements (4 TB) over one float, in the training state: loads, never copied."""
    return _with(path, "extra", _expanded(), {"one": b"\0\0\x80?"})


def oversized_view_as_weight(path):
    """The same view as a weight of the model: the shape check against the model refuses it."""
    return _with(path, "sd", _expanded(), {"one": b"\0\0\x80?"})


def doubling_lists(path, n=60):
    """L[i] = [L[i-1], L[i-1]]: 120 memo references, 2**60 paths."""
    expr = b"]" + memo_put(0) + b"0"  # each list made, memoized, popped (POP): the expression pushes one
    for i in range(1, n + 1):
        expr += b"](" + memo_get(i - 1) + memo_get(i - 1) + b"e" + memo_put(i) + b"0"
    return _with(path, "extra", expr + memo_get(n))


def self_containing(path):
    return _with(path, "extra", b"]" + memo_put(0) + memo_get(0) + b"a")


def deep_tuple_key(path):
    """A dict key nested a million tuples deep: hashing it recurses in C past the stack (a crash)."""
    return _with(path, "extra", b"}K\x01" + b"\x85" * 10 ** 6 + b"Ns")


def colliding_keys(path, n=50000):
    """n int keys of one hash value: a dict of them takes n**2 / 2 comparisons."""
    items = b"".join(b"\x8a\x0a" + (i * P61).to_bytes(10, "little", signed=True) + b"N" for i in range(1, n + 1))
    return _with(path, "extra", b"}(" + items + b"u")


def huge_zeros(path, size=8 << 30):
    """8 GiB that are not a checkpoint (a sparse file: no disk space)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def huge_zip_header(path, size=8 << 30):
    """8 GiB starting like a zip archive, without its end record."""
    huge_zeros(path, size)
    with open(path, "r+b") as f:
        f.write(b"PK\x03\x04")
    return path


def _small_pkl(keys, numels):
    """data.pkl of a list of float32 tensors over the storages `keys`."""
    body = b"".join(tensor(key, n, (n,), (1,)) for key, n in zip(keys, numels))
    return b"\x80\x02](" + body + b"e."


def overlapping_entries(path, n=300, tail=8 << 20):
    """Entries nested in one another, each with its own local header and a true CRC: entry i's data
    is everything after its header (the headers and data of entries i+1 .. n, then 8 MiB). A reader
    that trusts the directory reads 2.4 GB from a file of 8 MiB."""
    keys = [f"s{i:04d}" for i in range(n)]  # names of 18 bytes: headers of 48, float32-aligned sizes
    headers = [struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 18, 0) + f"archive/data/{k}".encode()
               for k in keys]
    sizes = [len(headers) * 48 - 48 * (i + 1) + tail for i in range(n)]
    chunk = np.zeros(tail, np.uint8).tobytes()
    crcs = []
    for i in range(n):
        crcs.append(zlib.crc32(chunk, zlib.crc32(b"".join(headers[i + 1:]))))
    pkl = _small_pkl(keys, [size // 4 for size in sizes])
    first = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(pkl), len(pkl), len(pkl), 16, 0)
    body = first + b"archive/data.pkl" + pkl
    records = [("archive/data.pkl", 0, len(pkl), zlib.crc32(pkl))]
    records += [(f"archive/data/{k}", len(body) + 48 * i, sizes[i], crcs[i]) for i, k in enumerate(keys)]
    return raw_zip(path, [], records=records, prefix=body + b"".join(headers) + chunk)


def entry_larger_than_file(path):
    pkl = _small_pkl(["0"], [BIG])
    records = [("archive/data.pkl", 0, len(pkl), zlib.crc32(pkl)), ("archive/data/0", 0, 0xFFFFFFF0, 0)]
    return raw_zip(path, [("archive/data.pkl", pkl)], records=records)


def directory_outside_the_file(path):
    return raw_zip(path, [("archive/data.pkl", _small_pkl([], []))], cd_offset=1 << 31)


def too_many_entries(path):
    return raw_zip(path, [("archive/data.pkl", _small_pkl([], []))], zip64_count=1 << 40)


def big_pickle(path):
    """A 9 MiB data.pkl (a string): unpickled, pickles like it take ~50 times their size."""
    return write_zip(path, b"\x80\x02" + pstr("x" * (9 << 20)) + b".", {})


ATTACKS = {  # name -> (writer, None for a correct load, else a fragment of the error)
    "shared references": (shared_references, None),
    "oversized view, unused": (oversized_view_unused, None),
    "oversized view as a weight": (oversized_view_as_weight, f"shape mismatch: {SD_KEY}"),
    "doubling lists": (doubling_lists, "shared containers that unfold to"),
    "a list inside itself": (self_containing, "a container that contains itself"),
    "a deep tuple key": (deep_tuple_key, "a dict key nested deeper than"),
    "colliding keys": (colliding_keys, "dict keys of one hash value"),
    "8 GiB of zeros": (huge_zeros, "neither a zip archive nor torch's legacy format"),
    "8 GiB after a zip header": (huge_zip_header, "without its end record"),
    "overlapping entries": (overlapping_entries, "the zip entries declare"),
    "an entry larger than the file": (entry_larger_than_file, "the zip entries declare"),
    "a directory outside the file": (directory_outside_the_file, "lies outside the file"),
    "too many entries": (too_many_entries, "entries, more than a checkpoint's"),
    "a 9 MiB pickle": (big_pickle, "more than a checkpoint's"),
}


def write_attacks(folder, names=None):
    """Every attack (or those named) as `folder/<name>.pth`; returns {name: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: str(ATTACKS[name][0](folder / (name.replace(" ", "_").replace(",", "") + ".pth")))
            for name in (names or ATTACKS)}


# --- a child process that loads files under a memory cap -------------------------------------------

CAP = 2 << 30  # address space the child may add to what it holds after its imports and warm-up

# Run in a fresh interpreter: sets the cap, then loads each file in turn; per file one JSON line
# {name, outcome: ok | error | <exception type>, message, same_weights, peak (bytes of resident memory
# above the level before the load), seconds}. A file that takes over a minute ends as TimeoutError.
CHILD = r'''
import gc, json, resource, signal, sys, time
import numpy as np
args = json.loads(sys.argv[1])
import liif
from liif.errors import CheckpointError

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

def load(path):
    m = liif.load_model(path, framework=args["framework"], device="cpu")
    return m.backend.state_dict_numpy(m.net)

clean = load(args["clean"])  # warm-up: the framework, the model's modules
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + args["cap"], resource.RLIM_INFINITY))

def too_long(*_):
    raise TimeoutError("over a minute")
signal.signal(signal.SIGALRM, too_long)
for name, path in args["files"].items():
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the present resident size
    before, start, row = status("VmRSS"), time.time(), {"name": name, "same_weights": None}
    signal.alarm(60)
    try:
        sd = load(path)
        row.update(outcome="ok", message="", same_weights=all(np.array_equal(sd[k], clean[k]) for k in clean))
        del sd
    except CheckpointError as e:
        row.update(outcome="error", message=str(e))
    except BaseException as e:
        row.update(outcome=type(e).__name__, message=str(e)[:300])
    signal.alarm(0)
    row.update(peak=status("VmHWM") - before, seconds=round(time.time() - start, 2))
    print(json.dumps(row), flush=True)
'''


def load_in_capped_child(files, framework="torch", clean_path=None, timeout=900):
    """Load each of `files` ({name: path}) with `liif.load_model` in one child process under CAP;
    returns ({name: row}, the child's stderr). A name missing from the rows: the child died on it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    arg = json.dumps({"files": files, "framework": framework, "clean": str(clean_path), "cap": CAP})
    r = subprocess.run([sys.executable, "-c", CHILD, arg], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    rows = {row["name"]: row for row in map(json.loads, filter(None, r.stdout.splitlines()))}
    return rows, f"exit {r.returncode}: {r.stderr[-3000:]}"


def peak_bound(path):
    """What loading `path` may add to resident memory: twice the file, plus 64 MiB of interpreter and
    model; nothing of the 8 GiB files (sparse: they hold nothing) may be read."""
    size = os.path.getsize(path)
    return (2 * size if size < 1 << 30 else 0) + (64 << 20)


def check_row(row, expected, path, note=""):
    """A correct load, or the one-line error expected; within `peak_bound`."""
    assert row is not None, f"the child died on this file: {note}"
    if expected is None:
        assert row["outcome"] == "ok" and row["same_weights"], row
    else:
        assert row["outcome"] == "error" and expected in row["message"] and "\n" not in row["message"], row
    assert row["peak"] <= peak_bound(path), row
