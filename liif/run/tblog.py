"""TensorBoard logging that can never end a run (optional: needs tensorboardX).

A full disk, or a `tb` that is a file in a copied run folder, made TensorBoard's writer raise a
traceback before or after the real error. Here every call to the run's event log
(liif/run/eventlog.py) goes through a guard: the first failure logs one warning and turns TensorBoard
logging off; training goes on (or stops for its own reason, e.g. a checkpoint that cannot be written).
"""
import logging

log = logging.getLogger(__name__)


class SafeWriter:
    """add_scalar / add_image / flush / close of an event log, never raising."""

    def __init__(self, writer):
        self._writer, self.failed = writer, False

    def add_scalar(self, *args, **kwargs):
        self._call("add_scalar", *args, **kwargs)

    def add_image(self, *args, **kwargs):
        self._call("add_image", *args, **kwargs)

    def flush(self):
        self._call("flush")

    def close(self):
        self._call("close")

    def _call(self, method, *args, **kwargs):
        if self.failed:
            return
        try:
            getattr(self._writer, method)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - logging is optional: any failure only stops the logging
            self.failed = True
            log.warning("TensorBoard logging stopped: %s: %s", type(e).__name__, e)


def open_writer(folder, purge_step=1):
    """A SafeWriter on the event log in `folder`, or None (no tensorboardX, or the folder unusable)."""
    from liif.run import eventlog
    try:
        writer = eventlog.open_log(folder, purge_step=purge_step)
    except OSError as e:
        log.warning("no TensorBoard logging: %s", e)
        return None
    return SafeWriter(writer) if writer is not None else None
