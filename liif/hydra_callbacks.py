"""Hydra callbacks (registered in conf/config.yaml under `hydra.callbacks`).

`ReportCallback` writes the sweep's report (liif.report) into the sweep folder:
- after each job of a multirun, report.md and report.csv only (cheap), so a report exists
  even when a job fails: Hydra then skips `on_multirun_end` (verified, design.md section 2);
- when the multirun ends, the full report with the plots.
It reads only the jobs' metrics.json files, so it works with every launcher (basic, joblib,
submitit), and it never raises: a broken report must not turn a finished sweep into a failure.
By hand, after anything: `python -m liif.report <sweep dir>`.
"""
import logging

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    def __init__(self, per_job=True):
        self.per_job = per_job
        self.sweep_dir = None

    def on_multirun_start(self, config, **kwargs):
        self.sweep_dir = _sweep_dir(config)  # resolved once: ${now:...} is cached from here on

    def on_job_end(self, config, job_return=None, **kwargs):
        if not self.per_job or not _is_multirun():
            return
        self._write(_sweep_dir(config) or self.sweep_dir, plots=False)

    def on_multirun_end(self, config, **kwargs):
        self._write(self.sweep_dir or _sweep_dir(config), plots=True)

    def _write(self, sweep_dir, plots):
        if not sweep_dir:
            return
        try:
            from liif import report
            paths = report.write(sweep_dir, plots=plots)
            if plots:
                log.info("report: %s", paths[0])
        except Exception as e:  # never fail the sweep because of its report
            log.warning("could not write the report for %s (%s: %s); try: python -m liif.report %s",
                        sweep_dir, type(e).__name__, e, sweep_dir)


def _sweep_dir(config):
    try:
        return str(config.hydra.sweep.dir)
    except Exception:
        return None


def _is_multirun():
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False
