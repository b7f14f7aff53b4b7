"""What the untrusted-input tests plant in run folders: a YAML alias bomb, and the byte-level changes
that both run-folder fuzzers make (tests/cli/test_untrusted_folders.py: what resume= and the viewer
read; tests/unit/report/test_untrusted.py: what the report reads). Each fuzzer adds the changes of
its own format (a hostile override line, a hostile JSON value) and its own hostile bytes."""
import os

BYTE_CHANGES = ("flip", "truncate", "splice", "replace", "remove", "folder", "fifo", "link out", "link to /dev/zero")


def billion_laughs(levels=9):
    """A YAML document of 9**levels strings written in a few hundred bytes (aliases of aliases)."""
    text = "- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"- &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


def change_bytes(path, op, rnd, splices, replacements, max_flips):
    """Make the change `op` (one of BYTE_CHANGES, drawn by the seeded `rnd`) to the file at `path`
    (or to nothing there: its bytes are then empty): flip 1 to `max_flips` bits, cut it short, splice
    one of `splices` in, replace it by one of `replacements`; or, where it is a file, remove it, make
    it a folder or a fifo, or a link out of the folder."""
    if op not in BYTE_CHANGES:
        raise ValueError(f"not a byte change: {op!r}")
    data = path.read_bytes() if path.is_file() else b""
    if op == "flip" and data:
        data = bytearray(data)
        for _ in range(rnd.randint(1, max_flips)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(data))
    elif op == "truncate":
        path.write_bytes(data[:rnd.randint(0, max(0, len(data) - 1))])
    elif op == "splice":
        at = rnd.randint(0, len(data))
        path.write_bytes(data[:at] + rnd.choice(splices) + data[at:])
    elif op == "replace":
        path.write_bytes(rnd.choice(replacements))
    elif path.is_file():  # the changes of what is there
        path.unlink()
        if op == "folder":
            path.mkdir()
        elif op == "fifo":
            os.mkfifo(path)
        elif op in ("link out", "link to /dev/zero"):
            path.symlink_to("/dev/zero" if op == "link to /dev/zero" else "/etc/hostname")
