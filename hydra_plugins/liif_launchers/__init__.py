"""`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): Hydra's submitit launcher under the
project's error policy.

Submitting, sbatch may refuse the jobs (an unknown partition, more CPUs, memory or GPUs than any node
has, a time limit over the partition's): submitit raises its own error with sbatch's output inside a
traceback. Waiting, a job may end with no result (cancelled, killed past its time limit with no
requeue left). Both are the user's to fix, so each ends the sweep with one line naming what SLURM said
and exit status 2. What the jobs themselves do on SLURM (save on SIGTERM and SIGUSR2, requeue, continue
in their folder, record their job id) is the run's business: liif/run/slurm.py, liif/run/rundir.py.
"""
import contextlib
import io
import os
import subprocess
import sys
import threading
import time

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


FIT = ("hydra.launcher.partition, cpus_per_task, mem_gb, gpus_per_node and timeout_min must fit a partition of "
       "this cluster: sinfo lists them")

# squeue's reasons for a pending job that SLURM will never start as it stands (a cluster whose
# EnforcePartLimits is NO, SLURM's default, queues such a job instead of refusing it)
NEVER_STARTS = {"PartitionConfig": "it asks for more than the partition's nodes have (CPUs, memory, GPUs)",
                "PartitionNodeLimit": "it asks for more nodes than the partition allows",
                "PartitionTimeLimit": "its time limit is over the partition's",
                "BadConstraints": "no node satisfies its constraints",
                "InvalidAccount": "its account is unknown", "InvalidQOS": "its QOS is unknown"}


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides, initial_job_idx):
        from submitit.core.utils import UncompletedJobError
        printed = io.StringIO()  # submitit prints sbatch's refusal, then raises it: said once, below
        watch = NeverStarts(os.path.abspath(str(self.params["submitit_folder"]).replace("%j", "")))
        watch.start()
        try:
            with contextlib.redirect_stderr(printed):
                return super().launch(job_overrides, initial_job_idx)
        except UncompletedJobError as e:
            cause = e.__cause__
            if isinstance(cause, subprocess.CalledProcessError) and "sbatch" in str(cause.cmd):
                _fail(f"SLURM refused the sweep's jobs: {slurm_reason(str(e))} ({FIT})")
            if watch.reason:
                _fail(f"SLURM would never start the sweep's jobs: {watch.reason}; they were cancelled ({FIT})")
            sys.stderr.write(printed.getvalue())
            sweep = self.config.hydra.sweep.dir if self.config is not None else "the sweep folder"
            _fail(f"a SLURM job ended without a result: {slurm_reason(str(e))}; the other jobs go on in SLURM "
                  f"(squeue); their logs are in {sweep}/.submitit/, and python run.py task=report dir={sweep} "
                  "reports what has finished")
        except BaseException:
            sys.stderr.write(printed.getvalue())
            raise
        else:
            sys.stderr.write(printed.getvalue())
        finally:
            watch.stop()


class NeverStarts(threading.Thread):
    """Watches the sweep's pending jobs (those whose batch script is in `folder`, submitit's) every
    `poll_s` seconds; when SLURM says one can never start (NEVER_STARTS), cancels all of them and keeps
    the reason, so that the sweep ends with it instead of waiting forever. Until `stop`, the cancelled
    jobs' wait for a result file is cut short (submitit's is one setting for all its SLURM jobs)."""

    def __init__(self, folder, poll_s=5.0):
        super().__init__(name="slurm-never-starts", daemon=True)
        self.folder, self.poll_s, self.reason = folder, poll_s, None
        self._stopped = threading.Event()
        self._results_timeout_s = None  # submitit's, while this one is in force

    def stop(self):
        self._stopped.set()
        if self._results_timeout_s is not None:  # another sweep in this process waits as submitit would
            from submitit.slurm.slurm import SlurmJob
            SlurmJob._results_timeout_s = self._results_timeout_s

    def run(self):
        while not self._stopped.wait(self.poll_s):
            try:
                queued = subprocess.run(["squeue", "-h", "--me", "-o", "%A|%T|%r|%o"], capture_output=True, text=True,
                                        timeout=60).stdout.splitlines()
            except (OSError, subprocess.SubprocessError):  # squeue missing or hung: the sweep waits as it would
                continue
            ours = [line.split("|", 3) for line in queued if line.count("|") >= 3 and self.folder in line.split("|", 3)[3]]
            stuck = [(job, reason) for job, state, reason, _ in ours if state == "PENDING" and reason in NEVER_STARTS]
            if stuck:
                job, reason = stuck[0]
                self.reason = f"job {job} is pending with reason {reason}: {NEVER_STARTS[reason]}"
                subprocess.run(["scancel", *sorted({j for j, *_ in ours})], capture_output=True, timeout=60)
                from submitit.slurm.slurm import SlurmJob
                # all are cancelled: no result file will come (submitit waits 15 s for one, for a slow file system)
                self._results_timeout_s, SlurmJob._results_timeout_s = SlurmJob._results_timeout_s, 0
                time.sleep(1)
                SlurmJob.watcher.update()  # the waiting jobs see their end now, not at sacct's next poll
                return


def slurm_reason(text):
    """What SLURM said went wrong, on one line: sbatch's `error:` lines (else the text's last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return "; ".join(errors or lines[-1:] or ["no reason given"])[:400]


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
