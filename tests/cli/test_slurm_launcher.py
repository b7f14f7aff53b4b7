"""hydra_plugins/liif_launchers (`hydra/launcher=slurm`) without a cluster: squeue and scancel stood in
for (tests/slurm/ runs it on a real one)."""
import subprocess

import pytest

pytest.importorskip("submitit")


def test_jobs_that_never_start_are_cancelled_and_their_wait_cut_short_until_the_watch_stops(monkeypatch):
    from submitit.slurm.slurm import SlurmJob
    from hydra_plugins.liif_launchers import NeverStarts
    commands = []

    def slurm(command, **kwargs):
        commands.append(command)
        listing = ("7|PENDING|PartitionConfig|/sweep/.submitit/7/7_submission.sh\n"
                   "8|RUNNING|None|/sweep/.submitit/8/8_submission.sh\n"
                   "9|PENDING|PartitionConfig|/another/.submitit/9/9_submission.sh\n")
        return subprocess.CompletedProcess(command, 0, listing if command[0] == "squeue" else "", "")
    monkeypatch.setattr(subprocess, "run", slurm)
    monkeypatch.setattr(SlurmJob.watcher, "update", lambda: None)
    monkeypatch.setattr(SlurmJob, "_results_timeout_s", 15)
    watch = NeverStarts("/sweep/.submitit/", poll_s=0.01)
    watch.start()
    watch.join(10)
    assert not watch.is_alive() and "job 7 is pending with reason PartitionConfig" in watch.reason
    assert ["scancel", "7", "8"] in commands  # the whole sweep, not another one's job
    assert SlurmJob._results_timeout_s == 0  # no result file will come: the sweep ends now
    watch.stop()
    assert SlurmJob._results_timeout_s == 15  # a later sweep in this process waits as submitit would
