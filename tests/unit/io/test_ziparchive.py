"""liif.io.ziparchive: torch's zip archives read from their directory, each lie of the directory
refused before an entry's bytes are read (checkpoint_attacks.raw_zip writes the lies byte by byte)."""
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest

from checkpoint_attacks import raw_zip
from liif.io.ziparchive import ArchiveError, ZipArchive

ENTRIES = [("archive/data.pkl", b"\x80\x02N."), ("archive/data/0", np.arange(5, dtype="<f4").tobytes())]


def _open(path):
    f = open(path, "rb")
    f.seek(0, 2)
    return f, f.tell()


def _archive(path):
    f, size = _open(path)
    with f:
        archive = ZipArchive(f, size)
        return archive, {name: archive.read(name) for name in archive.entries}


@pytest.mark.parametrize("writer", ["zipfile", "zipfile, zip64 and a comment", "by hand"])
def test_archives_as_torch_and_python_write_them(tmp_path, writer):
    path = tmp_path / "a.zip"
    if writer == "by hand":
        raw_zip(path, ENTRIES)
    else:
        with zipfile.ZipFile(path, "w") as z:
            for name, data in ENTRIES:
                with z.open(name, "w", force_zip64="zip64" in writer) as entry:
                    entry.write(data)
            if "comment" in writer:
                z.comment = b"PK\x05\x06 inside a comment"
    _, read = _archive(path)
    assert read == dict(ENTRIES)


def test_zip64_sizes_and_offsets_in_the_directory(tmp_path):
    """Past 4 GiB torch's directory holds 0xFFFFFFFF and the values in the zip64 extra field."""
    data = ENTRIES[1][1]
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0, zlib.crc32(data), 0xFFFFFFFF, 0xFFFFFFFF,
                        len(b"archive/data/0"), 0) + b"archive/data/0" + data
    extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), 0)
    cd = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, zlib.crc32(data), 0xFFFFFFFF,
                     0xFFFFFFFF, len(b"archive/data/0"), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + b"archive/data/0" + extra
    record = len(local) + len(cd)
    tail = (struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(cd), len(local))
            + struct.pack("<4sIQI", b"PK\x06\x07", 0, record, 1)
            + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    (tmp_path / "z64.zip").write_bytes(local + cd + tail)
    archive, read = _archive(tmp_path / "z64.zip")
    assert read == {"archive/data/0": data} and archive.entries["archive/data/0"][:2] == (0, len(data))


def test_an_entry_is_read_into_an_array(tmp_path):
    f, size = _open(raw_zip(tmp_path / "a.zip", ENTRIES))
    with f:
        out = ZipArchive(f, size).read("archive/data/0", into=np.empty(5, np.float32))
    np.testing.assert_array_equal(out, np.arange(5))


def _lie(tmp_path, case):
    """An archive whose directory or entries say something false, and what the error must say."""
    pkl, storage = ENTRIES[0][1], ENTRIES[1][1]
    true = [("archive/data.pkl", 0, len(pkl), zlib.crc32(pkl)),
            ("archive/data/0", 30 + 16 + len(pkl), len(storage), zlib.crc32(storage))]
    path = tmp_path / "lie.zip"
    if case == "no end record":
        path.write_bytes(b"PK\x03\x04" + bytes(100000))
        return path, "without its end record"
    if case == "truncated":
        raw_zip(path, ENTRIES)
        path.write_bytes(path.read_bytes()[:-30])
        return path, "without its end record"
    if case == "directory outside the file":
        return raw_zip(path, ENTRIES, cd_offset=1 << 20), "lies outside the file"
    if case == "more entries than the directory holds":
        return raw_zip(path, ENTRIES, count=1000), "a damaged zip directory"
    if case == "entries for the whole address space":
        return raw_zip(path, ENTRIES, zip64_count=1 << 40), "more than a checkpoint's"
    if case == "a size larger than the file":
        return raw_zip(path, ENTRIES, records=[true[0], (true[1][0], true[1][1], 0xFFFFFFF0, 0)]), "the zip entries declare"
    if case == "one entry under many names":
        records = [true[0]] + [(f"archive/data/{i}", *true[1][1:]) for i in range(20)]
        return raw_zip(path, ENTRIES, records=records), "the zip entries declare"
    if case == "one name twice":
        return raw_zip(path, ENTRIES, records=[true[0], true[0]]), "two zip entries named"
    if case == "an offset to no local header":
        return raw_zip(path, ENTRIES, records=[true[0], (true[1][0], 3, *true[1][2:])]), "no local header"
    if case == "a wrong CRC":
        return raw_zip(path, ENTRIES, records=[true[0], (*true[1][:3], 12345)]), "CRC-32"
    if case == "compressed":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/data.pkl", pkl)
        return path, "compressed or encrypted entry"
    raise AssertionError(case)


LIES = ["no end record", "truncated", "directory outside the file", "more entries than the directory holds",
        "entries for the whole address space", "a size larger than the file", "one entry under many names",
        "one name twice", "an offset to no local header", "a wrong CRC", "compressed"]


@pytest.mark.parametrize("case", LIES)
def test_a_lying_archive_is_refused_with_what_is_wrong(tmp_path, case):
    path, fragment = _lie(tmp_path, case)
    with pytest.raises(ArchiveError, match=fragment) as err:
        _archive(path)
    assert "\n" not in str(err.value)


def test_only_the_end_of_a_large_file_is_read(tmp_path):
    """A 4 GiB file that starts like an archive: refused after reading its last 64 KiB."""
    path = tmp_path / "big.zip"
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(4 << 30)

    class Counting(io.FileIO):
        read_bytes = 0

        def readinto(self, b):
            n = super().readinto(b)
            Counting.read_bytes += n or 0
            return n

    with Counting(path) as f, pytest.raises(ArchiveError, match="without its end record"):
        ZipArchive(f, 4 << 30)
    assert Counting.read_bytes <= 22 + 0xFFFF
