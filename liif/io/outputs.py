"""Where a named result file may go (`check_output_path`) and in what format (`write_image`).

- Where: a named output is checked before any work starts: not empty, not a folder (nor a trailing
  slash), not under a file, not a special file (device, fifo, socket) or a symbolic link, not one of
  the run's inputs (the demo never replaces its own input image), in a writable folder, with an
  extension we can encode.
- How: through `liif.io.durable.write_atomic`, like every result file (temp file, fsync, rename; a
  full disk or a read-only file system is one `OutputError` line).
- Format: from the extension (`out.jpg` gets JPEG bytes), never PNG bytes under another name.
"""
import os
import stat

from liif.io import durable
from liif.errors import OutputError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP"}
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}  # what libjpeg and libwebp can encode, per side
JPEG_QUALITY = 95  # Pillow's default (75) visibly blurs a super-resolved image


def image_format(path):
    """Pillow's format name for the extension of `path`, or a one-line OutputError."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in IMAGE_FORMATS:
        raise OutputError(f"cannot tell the image format of output {path!s} from its extension "
                          f"'{ext or '(none)'}'; use one of {', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[ext]


def check_image_size(path, height, width):
    """The format of `path` can hold a height x width image (checked before the work, not after it)."""
    fmt = image_format(path)
    limit = MAX_SIDE.get(fmt)
    if limit and max(height, width) > limit:
        raise OutputError(f"{fmt} images are at most {limit} pixels a side, and {height}x{width} was asked for: "
                          "write a .png instead")
    return fmt


def check_output_path(path, inputs=(), what="output"):
    """The output path, made absolute (`~` expanded), after checking it can be written as a new
    regular file; `inputs` are files it must not be (compared by identity: links count)."""
    if path is None or not str(path).strip():
        raise OutputError(f"{what}= is empty; give a file name, e.g. {what}=out.png")
    raw = str(path)
    if raw.endswith(("/", os.sep)) or os.path.basename(raw) in (".", ".."):
        raise OutputError(f"{what}={raw} names a folder; give a file name inside it, e.g. {what}={raw.rstrip('/')}/out.png")
    path = os.path.abspath(os.path.expanduser(raw))
    if os.path.islink(path):
        raise OutputError(f"{what}={raw} is a symbolic link (to {os.readlink(path)}); it is not replaced: "
                          "remove it or choose another name")
    if os.path.exists(path):
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise OutputError(f"{what}={raw} is a folder; give a file name inside it, e.g. {what}={os.path.join(raw, 'out.png')}")
        if not stat.S_ISREG(mode):
            raise OutputError(f"{what}={raw} is a special file ({_kind(mode)}), not a regular file; it is not replaced")
        for other in inputs:
            if other and os.path.exists(other) and os.path.samefile(path, other):
                raise OutputError(f"{what}={raw} is the input {other} itself; it is never overwritten: "
                                  "choose another output name")
        if not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222:  # root passes access()
            raise OutputError(f"{what}={raw} exists and is read-only; it is not replaced: choose another name")
    folder = durable.existing_ancestor(os.path.dirname(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{what}={raw} lies under {folder}, which is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what}={raw}: the folder {folder} is not writable")
    name_max = _name_max(folder)
    if name_max and any(len(os.fsencode(part)) > name_max for part in path.split(os.sep)):
        raise OutputError(f"{what}={raw}: a name in this path is longer than the file system allows ({name_max} bytes)")
    return path


def write_image(image, path):
    """uint8 HxWx3 `image` to `path`, atomically, in the format its extension names."""
    import numpy as np
    from PIL import Image
    fmt = image_format(path)
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    pil = Image.fromarray(np.ascontiguousarray(image))
    durable.write_atomic(path, lambda f: pil.save(f, format=fmt, **options))


def _name_max(folder):
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return None


def _kind(mode):
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"
