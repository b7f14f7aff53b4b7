"""Issue 11's classes 3-7 and the project's own attack cases (docs/reliability.md), in process:
output paths, memory checks, labels, caches, file modes, EXIF, non-finite weights."""
import pytest

from liif import memory


def test_memory_check_refuses_what_cannot_fit():
    available = memory.available_bytes()
    assert available is not None and available > 1 << 20  # Linux: MemAvailable, at least a megabyte
    memory.check_fits(1 << 20, "a megabyte")
    with pytest.raises(memory.NotEnoughMemory, match=r"a petabyte needs about 1024\.0 TB .* available; lower it"):
        memory.check_fits(1 << 50, "a petabyte", advice="lower it")


def test_memory_estimate_of_an_upscale_counts_every_output_copy():
    assert memory.upscale_bytes(1000, 2000) == 3 * 1000 * 2000 * 3
