"""Check a large allocation against the memory the machine has left, BEFORE making it.

An absurd request (`size=[200000,200000]`: 120 GB of uint8 output) would otherwise be allocated
first and end in the allocator's MemoryError, or in the kernel's OOM killer with no message at all.
`check_fits(nbytes, what)` compares an estimate with the available memory (Linux: MemAvailable and
the cgroup's limit; elsewhere: free physical pages) and raises a one-line `NotEnoughMemory`.
Estimates are deliberately rough: the point is to refuse what cannot fit, not to predict peaks.
"""
import os

from liif.cli import UserError


class NotEnoughMemory(UserError):
    """The work asked for needs more memory than the machine has available."""


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
        raise NotEnoughMemory(f"{what} needs about {_human(nbytes)} of memory, but only {_human(available)} is "
                              f"available{'; ' + advice if advice else ''}")


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


def _human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
