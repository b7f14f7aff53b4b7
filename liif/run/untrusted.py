"""A run folder from someone else (a colleague's tarball, a shared disk): what may be read from it.

What a folder holds is input, never instructions: a resume (liif/cli/argv.py, the trainer) and the
viewer's `dir=` (liif/serve/sources.py) read it through these checks first.
- `check_folder`: no link in the folder leads out of it, and the files written into in place (not
  replaced by a rename, as every result file is) are plain files of their own. A resumed run writes
  its checkpoints, TensorBoard events and samples through a linked folder and Hydra opens its
  `.hydra/*.yaml` and log through a linked file, so a link out would make the run write elsewhere;
  opening a fifo for writing blocks forever; a hard link is a second name of a file elsewhere.
- `inside`: whether a path found in a folder stays in it once every link is resolved.
- `printable`: a name or text from a folder as one line for a message (no line break, no terminal code).
- `read_string_list`: a YAML list of strings (Hydra's overrides.yaml) within a size cap, read event
  by event: no alias (nine aliases of nine aliases, a few KB, are gigabytes once expanded), no
  nesting, no recursion.
"""
import os
import stat

from liif.errors import RunDirError
from liif.sizes import format_bytes

# A run folder holds a few dozen files (checkpoints, samples, one TensorBoard file per start);
# walking one of a million entries is not a resume's business.
MAX_ENTRIES = 100_000
# Hydra's overrides.yaml: one line per key=value of the command line, a few hundred bytes
MAX_LIST_BYTES = 64 << 10


def inside(path, folder):
    """Whether `path`, every link resolved, is `folder` or lies within it (also resolved)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(path)
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def check_folder(folder, in_place=()):
    """Raise RunDirError if a link in `folder` (at any depth) resolves outside it, if it holds more
    than MAX_ENTRIES entries, or if one of `in_place` (paths relative to it, of files that are
    opened and written in place) exists as anything but a regular file with a single name."""
    count = 0
    for parent, dirs, files in os.walk(folder):  # links are listed, never followed
        for name in dirs + files:
            count += 1
            if count > MAX_ENTRIES:
                raise RunDirError(f"{folder} holds over {MAX_ENTRIES} files, far more than a run writes: not a run "
                                  "folder this project can take")
            path = os.path.join(parent, name)
            if os.path.islink(path) and not inside(path, folder):
                raise RunDirError(f"{printable(path, 300)} is a link to {printable(os.readlink(path))}, outside {folder}: "
                                  "a run folder is read and written only within itself; copy what it points to into "
                                  "the folder instead")
    for name in in_place:
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"{path} is {_kind(st.st_mode)}, not a regular file: it is written in place when the run "
                              "continues; remove it")
        if st.st_nlink > 1:
            raise RunDirError(f"{path} has {st.st_nlink} names (hard links): writing it in place would change the "
                              "file of its other names too; remove it")


def read_string_list(path, limit=MAX_LIST_BYTES):
    """The strings of a YAML file holding one list of strings (or nothing), read within `limit`
    bytes. RunDirError (naming the file and why) for anything else: not a regular file, too large,
    not UTF-8, not YAML, an alias or anchor, a mapping, a nested list, several documents."""
    import yaml
    text = _read_text(path, limit)
    items, depth, documents = [], 0, 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # the parser is a state machine: no recursion
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise RunDirError(f"{path} holds YAML aliases; a list of overrides never does (a few KB of "
                                  "aliases expand to gigabytes)")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise RunDirError(f"{path} holds several YAML documents, not one list of overrides")
            elif isinstance(event, yaml.MappingStartEvent):
                raise RunDirError(f"{path} holds a mapping, not a list of overrides")
            elif isinstance(event, yaml.SequenceStartEvent):
                depth += 1
                if depth > 1:
                    raise RunDirError(f"{path} holds a nested list, not a list of overrides")
            elif isinstance(event, yaml.SequenceEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                if depth == 1:
                    items.append(event.value)
                elif event.value not in ("", "null", "~") or event.style:  # an empty document is an empty list
                    raise RunDirError(f"{path} holds a single value, not a list of overrides")
    except yaml.YAMLError as e:
        raise RunDirError(f"{path} is not valid YAML ({printable(str(e).splitlines()[0])})") from None
    return items


def _read_text(path, limit):
    try:  # O_NONBLOCK: opening a fifo to read would wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RunDirError(f"{path} is {_kind(mode)}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RunDirError(f"{path} is over {format_bytes(limit)}, far more than a run writes there")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not UTF-8 text") from None


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a link"), (stat.S_ISFIFO, "a fifo"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def printable(text, limit=120):
    """`text` as one printable line of at most `limit` characters (a name from a folder may hold
    line breaks and terminal escapes)."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."
