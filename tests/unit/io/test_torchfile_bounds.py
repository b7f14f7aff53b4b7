"""What a crafted checkpoint may demand of memory and time (issue 21): liif.io.torchfile reads a
file in a small multiple of its size and time, whatever its pickle and its zip directory claim.

The attacks of tests/checkpoint_attacks.py (a storage referred to 22000 times, a 4 TB view of one
float, memo references unfolding into 2**60 paths, a list inside itself, a million-deep tuple key,
keys of one hash, 8 GiB files that are no checkpoint, lying zip directories, a 9 MiB pickle) go
through `liif.load_model` in a child process capped at CAP of address space beyond its own: each
must load correctly or be one CheckpointError line, within `peak_bound` of resident memory (twice
the file plus 64 MiB). The same files through task=demo and task=test: tests/cli/test_checkpoint_bounds.py.
Below them, one test per limit of the reader, in process.
"""
import os
import signal
import struct
import zipfile

import numpy as np
import pytest

from checkpoint_attacks import (ATTACKS, P61, clean, check_row, legacy_file, load_in_capped_child, memo_get,
                                memo_put, pstr, raw_zip, tensor, write_attacks, write_zip)
from liif.io import torchfile

HAS_JITTOR = __import__("importlib").util.find_spec("jittor") is not None


@pytest.fixture(scope="module")
def attack_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    return write_attacks(folder), clean(folder / "clean.pth")


@pytest.fixture(scope="module")
def torch_rows(attack_files):
    files, clean_path = attack_files
    return load_in_capped_child(files, "torch", clean_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_crafted_checkpoint_through_load_model_under_a_memory_cap(attack_files, torch_rows, name):
    rows, stderr = torch_rows
    check_row(rows.get(name), ATTACKS[name][1], attack_files[0][name], stderr)


@pytest.mark.slow
@pytest.mark.jittor
@pytest.mark.skipif(not HAS_JITTOR, reason="jittor is not installed")
def test_crafted_checkpoints_through_load_model_on_jittor(attack_files):
    """Jittor reads checkpoints through the same reader: a correct load and two refusals suffice."""
    names = ["shared references", "oversized view as a weight", "doubling lists"]
    rows, stderr = load_in_capped_child({n: attack_files[0][n] for n in names}, "jittor", attack_files[1])
    for name in names:
        check_row(rows.get(name), ATTACKS[name][1], attack_files[0][name], stderr)


# --- each limit, in process -----------------------------------------------------------------------

def _load(path):
    with pytest.raises(torchfile.TorchFileError) as err:
        torchfile.load(str(path))
    assert "\n" not in str(err.value)
    return str(err.value)


def _zip(tmp_path, expr, storages=None):
    return write_zip(tmp_path / "c.pth", b"\x80\x02" + expr + b".", storages or {})


FIVE = {"0": np.arange(5, dtype="<f4").tobytes()}


def test_tensors_share_their_storage_and_views_stay_views(tmp_path):
    """Torch's loader shares a storage between its tensors, and so does this one: one object
    referred to twice is one array, views of one storage share its memory, nothing is copied."""
    t = tensor("0", 5, (5,), (1,))
    expr = (b"}(" + pstr("a") + t + memo_put(0) + pstr("b") + memo_get(0) + pstr("c") + tensor("0", 5, (2, 2), (1, 2), 1)
            + pstr("d") + tensor("0", 5, (1000, 1000), (0, 0), 4) + b"u")
    got = torchfile.load(str(_zip(tmp_path, expr, FIVE)))
    assert got["a"] is got["b"] and np.shares_memory(got["a"], got["c"]) and np.shares_memory(got["a"], got["d"])
    np.testing.assert_array_equal(got["c"], [[1, 3], [2, 4]])
    assert got["d"].shape == (1000, 1000) and got["d"].strides == (0, 0) and (got["d"] == 4).all()
    assert all(a.flags.writeable for a in got.values())


def test_a_big_endian_archive_is_read_in_native_order(tmp_path):
    path = tmp_path / "big.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + tensor("0", 5, (5,), (1,)) + b".")
        z.writestr("archive/byteorder", b"big")
        z.writestr("archive/data/0", np.arange(5, dtype=">f4").tobytes())
    got = torchfile.load(str(path))
    assert got.dtype == np.float32 and got.dtype.isnative and got.tolist() == [0, 1, 2, 3, 4]


def test_a_storage_of_another_size_than_its_tensors_declare(tmp_path):
    assert "holds 20 bytes, not the 6 elements" in _load(_zip(tmp_path, tensor("0", 6, (5,), (1,)), FIVE))


def _keys(route, keys):
    """A pickle expression making a container of `keys` (each pushed by its own expression)."""
    pushed = b"".join(keys)
    if route == "dict":
        return b"}(" + b"".join(k + b"N" for k in keys) + b"u"
    if route == "DICT opcode":
        return b"(" + b"".join(k + b"N" for k in keys) + b"d"
    if route == "set":
        return b"cbuiltins\nset\n(]" + b"(" + pushed + b"e" + b"tR"
    if route == "frozenset opcode":
        return b"(" + pushed + b"\x91"
    if route == "empty set, ADDITEMS":
        return b"\x8f(" + pushed + b"\x90"
    if route == "OrderedDict":
        return b"ccollections\nOrderedDict\n(]" + b"(" + b"".join(b"(" + k + b"Nt" for k in keys) + b"e" + b"tR"
    raise AssertionError(route)


def _colliding(n):
    return [b"\x8a\x0a" + (i * P61).to_bytes(10, "little", signed=True) for i in range(1, n + 1)]


def _deep(depth):
    return [b"K\x01" + b"\x85" * depth]


ROUTES = ["dict", "DICT opcode", "set", "frozenset opcode", "empty set, ADDITEMS", "OrderedDict"]


@pytest.mark.parametrize("route", ROUTES)
def test_keys_are_checked_before_they_are_hashed(tmp_path, route):
    """Keys of one hash (n**2 / 2 comparisons for n of them) and deeply nested tuple keys (hashing
    recurses in C: a million levels crash the interpreter) are refused on every way into a dict or
    set; up to the limits they load."""
    assert len(torchfile.load(str(_zip(tmp_path, b"\x80\x04" + _keys(route, _colliding(32)))))) == 32
    assert "more than 32 dict keys of one hash value" in _load(_zip(tmp_path, b"\x80\x04" + _keys(route, _colliding(33))))
    assert len(torchfile.load(str(_zip(tmp_path, b"\x80\x04" + _keys(route, _deep(16)))))) == 1
    assert "nested deeper than 16 levels" in _load(_zip(tmp_path, b"\x80\x04" + _keys(route, _deep(17))))


@pytest.mark.parametrize("case, expr, fragment", [
    ("protocol-5 buffer of 2**40 bytes", b"\x80\x05\x96" + struct.pack("<Q", 1 << 40), "protocol-5 buffers"),
    ("a memo index of 2**40", b"Np1099511627776\n", "a memo index outside"),
    ("65 nested lists", b"]" * 65 + b"a" * 64, "nested deeper than 64 levels"),
    ("a dict inside itself", b"}" + memo_put(0) + pstr("self") + memo_get(0) + b"s", "a container that contains itself"),
    ("2**22 paths", b"]" + memo_put(0) + b"0" + b"".join(b"](" + memo_get(i) * 2 + b"e" + memo_put(i + 1) + b"0"
                                                         for i in range(22)) + memo_get(22), "unfold to more than"),
    ("a size over 2**63", tensor("0", 5, (2 ** 63,), (0,)), "bad size in a tensor: over 2**63"),
])
def test_pickles_that_ask_for_too_much(tmp_path, case, expr, fragment):
    assert fragment in _load(_zip(tmp_path, expr, FIVE))


def test_a_pickle_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    """data.pkl by its directory entry, the legacy format's pickles as they are read (their
    declared lengths are not allocated first)."""
    monkeypatch.setattr(torchfile, "MAX_PICKLE_BYTES", 1000)
    assert "its data.pkl is 1508 bytes, more than a checkpoint's 1000" in _load(_zip(tmp_path, pstr("x" * 1500)))
    obj = b"\x80\x02" + pstr("x" * 1500) + b"."
    assert "a pickle larger than 1000 bytes" in _load(legacy_file(tmp_path / "l.pth", obj, {}))
    huge = b"\x80\x02X" + struct.pack("<I", 2 ** 32 - 1) + b"."  # declares 4 GiB in a 30-byte file
    assert "a pickle larger than 1000 bytes" in _load(legacy_file(tmp_path / "l.pth", huge, {}))


def test_legacy_storages_together_fit_in_the_file(tmp_path):
    """Each storage is allocated when the pickle first names it, before its bytes are read: all of
    them together must fit in what is left of the file (each alone was checked before)."""
    path = legacy_file(tmp_path / "ok.pth", b"\x80\x02" + tensor("a", 5, (5,), (1,), legacy=True) + b".", {"a": FIVE["0"]})
    np.testing.assert_array_equal(torchfile.load(str(path)), np.arange(5))

    def two(n):  # two storages of n floats, their bytes missing
        pkl = b"\x80\x02(" + tensor("a", n, (n,), (1,), legacy=True) + tensor("b", n, (n,), (1,), legacy=True) + b"t."
        return legacy_file(tmp_path / "two.pth", pkl, {"a": b"", "b": b""})
    n = os.path.getsize(two(1)) // 8  # each storage half the file
    assert "storage 'b' does not fit in the file" in _load(two(n))


def test_a_file_that_is_no_checkpoint_is_named_so(tmp_path):
    (tmp_path / "t.pth").write_bytes(b"not a checkpoint at all\n" * 1000)
    assert "neither a zip archive nor torch's legacy format" in _load(tmp_path / "t.pth")
    assert "a zip archive without <name>/data.pkl" in _load(raw_zip(tmp_path / "z.pth", [("a.txt", b"x")]))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("opening the fifo blocked"))
    signal.alarm(10)
    try:
        assert _load(tmp_path / "fifo") == "not a regular file"
    finally:
        signal.alarm(0)
