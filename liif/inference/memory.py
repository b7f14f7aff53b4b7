"""Check a large allocation against the memory the machine has left, BEFORE making it.

An absurd request (`size=[200000,200000]`: 120 GB of uint8 output) would otherwise be allocated
first and end in the allocator's MemoryError, or in the kernel's OOM killer with no message at all.
`check_fits(nbytes, what)` compares an estimate with the available memory (Linux: MemAvailable and
the cgroup's limit; elsewhere: free physical pages) and raises a one-line `NotEnoughMemory`.
Estimates are deliberately rough: the point is to refuse what cannot fit, not to predict peaks.

Inference budgets (`max_memory`, liif/inference/tiled.py): `resolve_budget("auto")` or a size
(`liif.sizes.parse_bytes("2GB")`). `auto` is half of the memory available now, so that other programs
keep the other half. The errors (`NotEnoughMemory`, `BudgetTooSmall`) are in liif/errors.py.
"""
import ctypes
import ctypes.util
import os

from liif.errors import BudgetTooSmall, NotEnoughMemory
from liif.sizes import format_bytes, parse_bytes


def resolve_budget(max_memory, available=None):
    """`max_memory` ("auto", "2GB", bytes) -> bytes. `available`: the free memory of the device the
    budget is for (default: the host's, `available_bytes()`); auto is half of it."""
    if isinstance(max_memory, str) and max_memory.strip().lower() == "auto":
        free = available if available is not None else available_bytes()
        if free is None:
            raise BudgetTooSmall("max_memory=auto: cannot tell how much memory is free here; give a size, e.g. 2GB")
        return free // 2
    try:
        return parse_bytes(max_memory)
    except ValueError as e:
        raise BudgetTooSmall(f"max_memory: {e}") from None


_LIBC = []


def _glibc():
    """glibc through ctypes, or None (musl, macOS, Windows: their allocators behave otherwise)."""
    if not _LIBC:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.append(libc if hasattr(libc, "gnu_get_libc_version") else None)
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def release_freed_memory():
    """Give what glibc keeps of freed blocks back to the system (malloc_trim; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def available_bytes():
    """Bytes of memory this process can still get, or None when the platform does not say."""
    candidates = [_meminfo_available(), _cgroup_headroom()]
    if candidates == [None, None]:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # not a POSIX sysconf name here (macOS, Windows)
            pass
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def check_fits(nbytes, what, advice=""):
    """Raise NotEnoughMemory when `nbytes` (an estimate) exceeds the available memory."""
    available = available_bytes()
    if available is not None and nbytes > available:
        raise NotEnoughMemory(f"{what} needs about {format_bytes(nbytes)} of memory, but only "
                              f"{format_bytes(available)} is available{'; ' + advice if advice else ''}")


def upscale_bytes(height, width):
    """Rough peak of an upscale to height x width beyond the model itself: the uint8 output on the
    device, its copy in host memory and the copy the image encoder makes (3 bytes a pixel each)."""
    return 3 * (int(height) * int(width) * 3)


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom():
    """limit - usage of the cgroup (v2, then v1), or None when unlimited or unknown."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes a huge number for "no limit"
            return None
        return max(int(limit) - usage, 0)
    return None

