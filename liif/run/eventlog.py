"""The run's TensorBoard log (`tb/`), written synchronously.

tensorboardX's SummaryWriter hands events to a background thread, and its flush() does not
wait for that thread: events "flushed" before a checkpoint could still be lost by a kill, and
resume, which does not run those steps again, would leave a gap. Here an event is in the file
when the call returns, and flush() fsyncs it, so the write order of liif/run/recovery.py holds.

A resumed run hides the events of the steps it runs again: its file starts with a session
start at `purge_step` (TensorBoard then drops the earlier events at steps >= purge_step).
"""
import os
import time


class EventLog:
    def __init__(self, folder, purge_step):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        self._event = Event
        os.makedirs(folder, exist_ok=True)
        # The file name holds the time in seconds, and a file of the same name is truncated: the
        # start step after it keeps a killed run's file from a resume within the same second and
        # sorts the two in order (the same start step again: the killed run's events are all purged).
        self._file = EventsWriter(os.path.join(folder, "events"), f".from-step-{purge_step - 1:010d}")
        self._file.write_event(Event(wall_time=time.time(), step=purge_step,
                                     session_log=SessionLog(status=SessionLog.START)))

    def add_scalar(self, tag, value, step):
        from tensorboardX.summary import scalar
        self._write(scalar(tag, float(value)), step)

    def add_image(self, tag, pixels, step, dataformats="HWC"):
        from tensorboardX.summary import image
        self._write(image(tag, pixels, dataformats=dataformats), step)

    def flush(self):
        self._file.flush()  # fsyncs

    def close(self):
        self._file.close()

    def _write(self, summary, step):
        self._file.write_event(self._event(wall_time=time.time(), step=int(step), summary=summary))


def open_log(folder, purge_step):
    """An EventLog, or None without tensorboardX (it is optional)."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return None
    return EventLog(folder, purge_step)
