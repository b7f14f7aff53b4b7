"""Byte sizes as people write them: `parse_bytes("2GB")` and `format_bytes(n)`.

Sizes are binary: 1 KB = 1024 bytes, 1 GB = 1024**3 bytes ("GiB" is accepted as well). A foundation
module: the typed configs check `infer.max_memory` with it (liif/config.py) and the memory budgets
of inference use it (liif/inference/memory.py).
"""
import math
import re

UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# The largest size taken: what a signed 64-bit byte count holds (8 EB), more than any machine has.
# A larger one is a typo, and it was an OverflowError traceback (a 400-digit number is an int no
# float can hold; "1e999"-like digits a float that is infinite).
MAX_BYTES = (1 << 63) - 1


def parse_bytes(value):
    """`2GB`, `512MB`, `1.5GiB`, `300000000` or a number -> bytes (int, at most MAX_BYTES);
    ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"a memory size must be like 2GB or 512MB, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0 or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"a memory size must be positive, got {value!r}")
        return _at_most_max(value, value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(value).upper())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"a memory size must be like 2GB, 512MB or auto, got {_short(value)}")
    return _at_most_max(float(match.group(1)) * UNITS[match.group(2)], value)


def _at_most_max(size, given):
    if size > MAX_BYTES:  # an int compares exactly, a float may be inf: neither is converted first
        raise ValueError(f"a memory size must be at most 8 EB ({MAX_BYTES} bytes), got {_short(given)}")
    return int(size)


def _short(value):
    """repr(value), cut to 40 characters: a 400-digit number makes a poor error message."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def format_bytes(n):
    """`n` bytes in the largest unit below it, e.g. `1.5 GB` (whole bytes: `512 B`)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
