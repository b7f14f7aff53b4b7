"""Hydra callbacks (registered in conf/config.yaml under `hydra.callbacks`).

`ReportCallback` writes the sweep's report (liif.report) into the sweep folder:
- after each job of a multirun, report.md and report.csv only (cheap), so a report exists
  even when a job fails with a bug (a traceback): Hydra then skips `on_multirun_end`;
- when the multirun ends, the full report with the plots; when jobs failed with a user error
  (one line each, liif.cli.main), what their messages share (e.g. the expected data layout) once,
  a profile=smoke hint when data was missing, and exit status 2.
It reads only the jobs' metrics.json files (within liif.report's bounds: the sweep folder may hold
anyone's jobs), so it works with every launcher (basic, joblib, submitit), and it never raises: a
broken report must not turn a finished sweep into a failure. What it prints of the jobs' errors
has its control characters escaped (`terminal_text`).
By hand, after anything: `python -m liif.report <sweep dir>`.
"""
import logging
import os
import shlex
import sys

from hydra.experimental.callback import Callback

from liif.cli.main import register_run_name_resolver
from liif.run.untrusted import printable

log = logging.getLogger(__name__)

register_run_name_resolver()  # in launcher processes too: they name the jobs' run folders


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
        sweep_dir = self.sweep_dir or _sweep_dir(config)
        self._write(sweep_dir, plots=True)
        jobs = _jobs(sweep_dir)
        failed = [r for r in jobs if not r.ok]
        if failed:  # the jobs printed one line each; say what they share once, and fail the command
            print(failures_summary(failed, len(jobs), sweep_dir, _sweep_overrides(config)), file=sys.stderr)
            raise SystemExit(2)

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


def _jobs(sweep_dir):
    try:
        from liif import report
        return report.collect([sweep_dir])
    except Exception:  # never fail the sweep because of its report
        return []


def _sweep_overrides(config):
    try:
        return [str(o) for o in config.hydra.overrides.task]
    except Exception:
        return []


MAX_DETAIL_LINES = 40  # an expected data layout is a dozen lines


def terminal_text(detail):
    """The lines of a failed job's detail (from its metrics.json, which the sweep folder may have been
    given by anyone) as they may reach a terminal: escape sequences and other control characters
    written as escapes (one could retitle the window, rewrite the screen or set the clipboard), lines
    cut, at most MAX_DETAIL_LINES of them."""
    lines = detail.splitlines()
    shown = [printable(line, 300) for line in lines[:MAX_DETAIL_LINES]]
    if len(lines) > MAX_DETAIL_LINES:
        shown.append(f"... ({len(lines) - MAX_DETAIL_LINES} more lines)")
    return shown


def failures_summary(failed, n_jobs, sweep_dir, overrides):
    """The end of a sweep with failed jobs: their count, each distinct detail once, what to do."""
    lines = [f"{len(failed)} of {n_jobs} jobs failed (one line each above; {os.path.join(sweep_dir, 'report.md')} "
             "lists them)"]
    for detail in dict.fromkeys(r.detail for r in failed if r.detail):
        lines += terminal_text(detail)
    if any("expected layout" in (r.detail or "") or "DataLayoutError" in (r.reason or "") for r in failed):
        smoke = ["-m"] + [o for o in overrides if not o.startswith("profile=")] + ["profile=smoke"]
        lines += ["No data here yet? profile=smoke runs the same sweep on the embedded sample set (numbers "
                  "meaningless, every step checked): python run.py " + " ".join(shlex.quote(a) for a in smoke),
                  "Where the data goes: README.md, section Data."]
    return "\n".join(lines)
