"""How long will it take? Long tasks (training steps, test images, decoded chunks of a demo)
time their first units and say once, up front, what the whole will take.

The first `skip` units are not timed (first-use work: Jittor compiles its kernels, caches
fill), the next `measure` are; then one `estimate:` line is logged. `left_s()` keeps giving
the remaining time afterwards, at the mean rate so far, for progress lines.
"""
import logging
import time

log = logging.getLogger(__name__)


class Estimate:
    def __init__(self, what, total, unit, skip=1, measure=2, note=""):
        self.what, self.total, self.unit, self.note = what, total, unit, note
        self.skip, self.measure = skip, measure
        self.done, self.started, self.seconds_per_unit = 0, None, None

    def update(self, n=1):
        """`n` more units done. Returns the estimated total seconds left the one time it is
        first known (after it was logged), else None."""
        self.done += n
        if self.seconds_per_unit is not None:
            return None
        if self.started is None:
            if self.done >= self.skip:
                self.started, self.timed_from = time.perf_counter(), self.done
            return None
        timed = self.done - self.timed_from
        if timed < self.measure:
            return None
        self.seconds_per_unit = (time.perf_counter() - self.started) / timed
        left = max(self.total - self.done, 0) * self.seconds_per_unit
        log.info("estimate: %s: about %s for the %d %ss left (%s per %s, timed over %d)%s", self.what,
                 duration(left), self.total - self.done, self.unit, duration(self.seconds_per_unit, 2), self.unit,
                 timed, self.note)
        return left

    def left_s(self):
        """Seconds left at the mean rate since the clock started (it follows a machine that speeds
        up or slows down; time spent between units, e.g. validation, counts), None before the estimate."""
        if self.seconds_per_unit is None:
            return None
        rate = (time.perf_counter() - self.started) / (self.done - self.timed_from)
        return max(self.total - self.done, 0) * rate


def duration(seconds, digits=0):
    """3.2 -> '3 s', 600 -> '10 min', 7300 -> '2.0 h' (digits: decimals under a minute)."""
    if seconds < 90:
        return f"{seconds:.{digits}g} s" if digits and seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
