"""The zip archive of torch's checkpoint format, read from its central directory and checked
against the file before any entry's bytes are read.

    archive = ZipArchive(f, size)   # f: a binary file open at any position; size: its length
    archive.entries                 # name -> (local header offset, size, crc32)
    data = archive.read(name)       # bytes; archive.read(name, into=array) fills a NumPy array

Only what torch writes (and Python's zipfile, the tests' and `liif.io.torchfile.save`'s writer):
one disk, every entry stored uncompressed, zip64 records where present (torch always writes them).
The directory is the archive's word about itself, and it may lie: here it is read from the
file's end alone (its end record, at most 64 KiB from the end), and refused unless it lies inside
the file, names each entry once, and declares sizes that together fit in the bytes before it.
Then reading every entry once reads at most the file, whatever the directory claims, and a large
file that is not an archive is refused after reading its last 64 KiB. Each entry read is checked
against its local header and its CRC-32. Anything else is an `ArchiveError`, with what is wrong.
"""
import struct
import zlib

MAX_ENTRIES = 1 << 18  # torch writes one entry per storage, plus six


class ArchiveError(Exception):
    """The file is not a zip archive as torch writes them; the message says why."""


class ZipArchive:
    def __init__(self, f, size):
        self.f = f
        tail_start = max(0, size - (22 + 0xFFFF))
        tail = read_bytes(f, tail_start, size - tail_start)
        at = len(tail)
        while at >= 0:  # the last signature whose record and comment end the file (one in a comment does not)
            at = tail.rfind(b"PK\x05\x06", 0, at)
            if at >= 0 and at + 22 <= len(tail) and at + 22 + struct.unpack_from("<H", tail, at + 20)[0] == len(tail):
                break
        if at < 0:
            raise ArchiveError("a zip archive without its end record (truncated, or not a zip file)")
        disk, cd_disk, _, count, cd_size, cd_offset = struct.unpack_from("<HHHHII", tail, at + 4)
        end = tail_start + at  # the directory (and a zip64 end record) must lie before the end record
        if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # the zip64 locator: 64-bit values
            (record,) = struct.unpack_from("<Q", tail, at - 12)
            if record + 56 > end - 20 or read_bytes(f, record, 4) != b"PK\x06\x06":
                raise ArchiveError("a zip64 locator that points at no zip64 end record")
            disk, cd_disk, _, count, cd_size, cd_offset = struct.unpack("<IIQQQQ", read_bytes(f, record + 16, 40))
            end = record
        if disk or cd_disk:
            raise ArchiveError("a zip archive over several disks: not torch's format")
        if count > MAX_ENTRIES:
            raise ArchiveError(f"a zip archive of {count} entries, more than a checkpoint's {MAX_ENTRIES}")
        if cd_offset + cd_size > end:
            raise ArchiveError(f"the zip directory ({cd_size} bytes at {cd_offset}) lies outside the file")
        self.body_end = cd_offset
        self.entries = self._directory(read_bytes(f, cd_offset, cd_size), count)
        declared = sum(entry_size for _, entry_size, _ in self.entries.values())
        if declared > self.body_end:
            raise ArchiveError(f"the zip entries declare {declared} bytes in a file of {size}")

    @staticmethod
    def _directory(cd, count):
        """name -> (local header offset, size, crc32) for each of the `count` records of `cd`."""
        entries, pos = {}, 0
        for _ in range(count):
            if pos + 46 > len(cd) or cd[pos:pos + 4] != b"PK\x01\x02":
                raise ArchiveError("a damaged zip directory")
            flags, method, _, _, crc, csize, usize, nlen, elen, clen = struct.unpack_from("<HHHHIIIHHH", cd, pos + 8)
            (offset,) = struct.unpack_from("<I", cd, pos + 42)
            name = cd[pos + 46:pos + 46 + nlen].decode("utf-8" if flags & 0x800 else "cp437")
            extra = cd[pos + 46 + nlen:pos + 46 + nlen + elen]
            pos += 46 + nlen + elen + clen
            if pos > len(cd):
                raise ArchiveError("a damaged zip directory")
            usize, csize, offset = _zip64(extra, usize, csize, offset)
            if method != 0 or flags & 1:
                raise ArchiveError(f"compressed or encrypted entry {name[:60]}: torch stores every entry as it is")
            if csize != usize:
                raise ArchiveError(f"entry {name[:60]} declares two sizes")
            if name in entries:
                raise ArchiveError(f"two zip entries named {name[:60]}")
            entries[name] = (offset, usize, crc)
        return entries

    def read(self, name, into=None):
        """The entry `name`'s bytes, or `into` (a C-contiguous array of exactly its size) filled with them."""
        offset, size, crc = self.entries[name]
        header = read_bytes(self.f, offset, 30)
        nlen, elen = struct.unpack_from("<HH", header, 26)
        start = offset + 30 + nlen + elen
        if header[:4] != b"PK\x03\x04" or start + size > self.body_end:
            raise ArchiveError(f"entry {name[:60]}: no local header where the directory says, "
                               "or data past the directory")
        buffer = bytearray(size) if into is None else into
        if not read_into(self.f, start, buffer) or zlib.crc32(buffer) != crc:
            raise ArchiveError(f"entry {name[:60]} is damaged (its CRC-32 does not match)")
        return bytes(buffer) if into is None else into


def _zip64(extra, usize, csize, offset):
    """The sizes and offset from the zip64 extra field, for those of the 32-bit fields that say 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values, at = [], pos + 4
            for value in (usize, csize, offset):
                if value == 0xFFFFFFFF:
                    if at + 8 > min(pos + 4 + length, len(extra)):
                        raise ArchiveError("a damaged zip64 field")
                    (value,) = struct.unpack_from("<Q", extra, at)
                    at += 8
                values.append(value)
            return tuple(values)
        pos += 4 + length
    return usize, csize, offset


def read_into(f, offset, buffer):
    """Fill `buffer` (writable, C-contiguous) from byte `offset` of `f`; False if the file ends first."""
    f.seek(offset)
    view, done = memoryview(buffer).cast("B"), 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            return False
        done += n
    return True


def read_bytes(f, offset, n):
    buffer = bytearray(n)
    if not read_into(f, offset, buffer):
        raise ArchiveError("the file ends inside a zip record (truncated?)")
    return bytes(buffer)
