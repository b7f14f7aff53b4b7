"""The SLURM path on a real, throwaway one-node cluster (local_cluster.py; skipped with the reason
where it cannot start): sweeps submitted through `hydra/launcher=slurm`, the time limit and
preemption with submitit's requeue, `srun -n 2` training, and what SLURM refuses."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import local_cluster
from conftest import ROOT, assert_same_training, noise_photos, train_twice

# one cluster for them all: one xdist worker under `--dist loadgroup` (README's test command)
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

ON_THIS_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
                   "hydra.launcher.mem_gb=1", "hydra.launcher.gpus_per_node=0"]
TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "model.args.imnet_spec.args.hidden_list=[16]", "train.batch_size=4", "train.inp_size=8", "train.sample_q=16",
        "dataset.val.repeat=1", "scales=[2]", "device=cpu", "framework.threads=1", "dataset=folder"]


def submit(cluster, cwd, *args):
    """`python run.py -m ARGS` (the sweep's own process, which submits and waits) with the cluster's
    SLURM_CONF, started in the background."""
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "-m", *args], cwd=cwd, env={**cluster, "HYDRA_FULL_ERROR": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def slurm(cluster, *command):
    return subprocess.run(command, env=cluster, capture_output=True, text=True, timeout=60, check=True).stdout


def wait(cluster, procs, seconds=900, every_second=lambda: None):
    """Wait for the sweeps' processes; meanwhile a requeued job starts 5 s after its requeue instead of
    the minute SLURM holds it back (its BeginTime). Not sooner: slurmd refuses a start whose credential
    dates from the second its previous start was revoked in ("Job credential revoked"), and SLURM then
    ends the job as FAILED (seen in ~1 run of 5 when the hold was lifted at once)."""
    deadline = time.monotonic() + seconds
    held_since = {}
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        every_second()
        for line in slurm(cluster, "squeue", "-h", "-t", "PD", "-o", "%i %r").splitlines():
            job, reason = line.split()
            if reason == "BeginTime" and time.monotonic() - held_since.setdefault(job, time.monotonic()) >= 5:
                subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], env=cluster, capture_output=True)
                del held_since[job]
        time.sleep(1)
    outcomes = []
    for p in procs:
        if p.poll() is None:
            p.kill()
        out, err = p.communicate()
        outcomes.append((p.returncode, out, err))
    return outcomes


def records(sweep):
    return [json.loads(p.read_text()) for p in sorted(Path(sweep).glob("*/metrics.json"))]


def job_of(record):
    """The SLURM job a metrics.json names, as sacct takes it: <array job>_<task> for a job of an array
    (a sweep of several jobs), else its id."""
    job = record["slurm"]
    return f'{job["array_job_id"]}_{job["array_task_id"]}' if "array_job_id" in job else job["job_id"]


def sacct_states(cluster, job_id, seconds=30):
    """Every state SLURM's accounting recorded for `job_id`, its requeued starts included (-D), once the
    last is final: the accounting daemon records a job's end a moment after the job has ended (RUNNING
    was read right after a sweep's process ended)."""
    deadline = time.monotonic() + seconds
    while True:
        out = slurm(cluster, "sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id)
        states = [line.split("|")[1].split()[0] for line in out.splitlines() if line]
        if states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_a_sweep_runs_as_slurm_jobs_and_writes_its_report(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    [(status, out, err)] = wait(cluster, [submit(cluster, tmp_path, "experiment=table1_edsr_baseline_liif,table1_edsr_baseline_metasr",
                                                 "profile=smoke", *ON_THIS_CLUSTER, f"hydra.sweep.dir={sweep}")])
    assert status == 0, err[-3000:]
    assert (sweep / "report.md").is_file() and (sweep / "report.csv").is_file()
    report = (sweep / "report.md").read_text()
    assert "LIIF" in report and "MetaSR" in report, report
    jobs = records(sweep)
    assert [m["status"] for m in jobs] == ["ok", "ok"]
    # each job says which SLURM job wrote it, and SLURM's accounting agrees that it completed
    ids = [m["slurm"]["job_id"] for m in jobs]
    assert len(set(ids)) == 2 and all(m["slurm"]["partition"] == "debug" for m in jobs)
    for m in jobs:
        assert sacct_states(cluster, job_of(m)) == ["COMPLETED"]


@pytest.fixture
def slowed_node(cluster):
    """The node's jobs limited to a quarter of one CPU while the test runs (local_cluster.cpu_quota): a job
    that outlives its time limit without costing a minute of CPU. False where that cannot be done."""
    with local_cluster.cpu_quota(Path(cluster["SLURM_CONF"]).parent, cores=0.25) as slowed:
        yield slowed


def test_preemption_then_the_time_limit_requeue_and_continue_with_the_same_losses(cluster, slowed_node, tmp_path):
    """A training of ~1-2 minutes on the cluster under a 1-minute SLURM time limit, stopped both ways a
    cluster stops a job: requeued by `scontrol requeue` after its first checkpoint (preemption: SIGTERM),
    then, once started again, by its time limit (SIGUSR2 10 s before it: the run saves and submitit
    requeues it; then the limit is raised, or it would come every 30 s). It continues in its folder
    each time and ends with the losses, bit for bit, and the test PSNR of one uninterrupted run."""
    data = noise_photos(tmp_path / "imgs")
    # The job must still train when its time limit's warning comes, 20-50 s after its second start (SLURM
    # checks every 30 s). On the slowed node, 20 epochs of 225 steps take ~80 s of training (~18 core-s,
    # twice what the 50 s after the restart train), whatever the CPU. Unslowed, the CPU sets the pace, so
    # the job is sized for a fast one: 100 epochs, ~100 s on an idle 2-core machine.
    train = [*TINY, f"dataset.path={data}", f"train.epochs={20 if slowed_node else 100}", "dataset.train.repeat=300",
             "train.max_steps_per_epoch=null", "train.epoch_val=100"]
    sweep = tmp_path / "sweep"
    procs = [submit(cluster, tmp_path, *train, *ON_THIS_CLUSTER, "hydra.launcher.timeout_min=1",
                    "hydra.launcher.signal_delay_s=10", "hydra.launcher.max_num_timeout=20", f"hydra.sweep.dir={sweep}")]
    # preempted once its first epoch is saved, long before the time limit's first warning
    deadline = time.monotonic() + 300
    while not list(sweep.glob("*/checkpoints/epoch-last.pth")) and time.monotonic() < deadline:
        time.sleep(0.2)
    [job] = [line.split("|")[0] for line in slurm(cluster, "squeue", "-h", "-o", "%i|%o").splitlines()
             if str(sweep) in line]  # the job whose batch script is in this sweep's .submitit/
    slurm(cluster, "scontrol", "requeue", job)

    reference = tmp_path / "reference"  # meanwhile, the same training uninterrupted, outside SLURM
    procs.append(subprocess.Popen([sys.executable, str(ROOT / "run.py"), *train, f"hydra.run.dir={reference}"], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    raised = []

    def raise_the_limit_once_it_has_come():
        log = next(sweep.glob("*/run.log"))
        if not raised and "SIGUSR2 received" in log.read_text():
            slurm(cluster, "scontrol", "update", f"jobid={job}", "timelimit=10")
            raised.append(job)
    outcomes = wait(cluster, procs, every_second=raise_the_limit_once_it_has_come)
    for (status, out, err), name in zip(outcomes, ("sweep", "reference")):
        assert status == 0, f"{name}: {err[-3000:]}"
    want = json.loads((reference / "metrics.json").read_text())
    [got] = records(sweep)
    assert got["status"] == "ok", got
    # started again after each: the preemption, then at least one time limit (a machine that trained
    # this in under ~50 s after the restart might never meet its limit)
    assert int(got["slurm"].get("restart_count", 0)) >= 2, got["slurm"]
    states = sacct_states(cluster, job_of(got))
    assert states[-1] == "COMPLETED" and states[:-1].count("REQUEUED") >= 2, states
    assert [h["loss"] for h in got["train"]["history"]] == [h["loss"] for h in want["train"]["history"]]
    assert [t["psnr"] for t in got["records"]] == [t["psnr"] for t in want["records"]]
    log = next(sweep.glob("*/run.log")).read_text()
    for signal in ("SIGTERM", "SIGUSR2"):
        assert f"{signal} received: stopping after this step, saving a checkpoint" in log, log[-3000:]
    assert log.index("SIGTERM received") < log.index("SIGUSR2 received") and "resumed from" in log, log[-3000:]


def test_srun_two_tasks_train_as_one_process(cluster, tmp_path):
    """`srun -n 2 python run.py ...`: the two tasks form a process group from SLURM's variables alone
    (no torchrun) and train as one process with the same global batch."""
    data = noise_photos(tmp_path / "imgs")
    args = [*TINY, f"dataset.path={data}", "train.epochs=2", "dataset.train.repeat=5", "train.epoch_val=1"]

    def srun(*a):
        return subprocess.run(["srun", "-n", "2", "--cpus-per-task=1", sys.executable, str(ROOT / "run.py"), *a],
                              cwd=ROOT, env={**cluster, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=600)
    train_twice(srun, args, tmp_path / "srun", tmp_path / "single")
    assert_same_training(tmp_path / "srun", tmp_path / "single", n_epochs=2)
    assert len(list((tmp_path / "srun").rglob("metrics.json"))) == 1
    assert json.loads((tmp_path / "srun" / "metrics.json").read_text())["slurm"]["step_tasks"] == "2"


def test_a_batch_script_with_two_tasks_is_one_plain_process(cluster, tmp_path):
    """A batch script's environment says SLURM_NTASKS=2 and SLURM_PROCID=0 but it is one process: run.py
    called from it directly (no srun) trains alone, as a plain run."""
    data = noise_photos(tmp_path / "imgs")
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH -n 2\n#SBATCH -o {tmp_path}/job.out\n"
                      f"{sys.executable} {ROOT / 'run.py'} {' '.join(TINY)} dataset.path={data} train.epochs=1 "
                      f"dataset.train.repeat=2 hydra.run.dir={tmp_path / 'run'}\n")
    job = slurm(cluster, "sbatch", "--parsable", "--wait", str(script)).strip()
    assert sacct_states(cluster, job) == ["COMPLETED"], (tmp_path / "job.out").read_text()[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "ok" and m["slurm"]["job_id"] == job and "step_tasks" not in m["slurm"]


@pytest.mark.parametrize("setting, said", [
    ("hydra.launcher.partition=nowhere", "error: SLURM refused the sweep's jobs: invalid partition specified: nowhere"),
    ("hydra.launcher.mem_gb=100000", "error: SLURM refused the sweep's jobs: memory specification can not be satisfied"),
    # queued by SLURM (EnforcePartLimits=NO, its default), pending for ever: the launcher sees why and cancels
    ("hydra.launcher.cpus_per_task=512", "error: SLURM would never start the sweep's jobs: job "),
], ids=["a bad partition", "more memory than any node", "more CPUs than any node"])
def test_what_slurm_refuses_is_one_line_and_no_hang(cluster, tmp_path, setting, said):
    start = time.monotonic()
    [(status, out, err)] = wait(cluster, [submit(cluster, tmp_path, "experiment=table1_edsr_baseline_liif", "profile=smoke",
                                                 *ON_THIS_CLUSTER, setting, f"hydra.sweep.dir={tmp_path / 'sweep'}")],
                                seconds=120)
    assert time.monotonic() - start < 60
    assert status == 2, err[-3000:]
    assert err.lower().startswith(said.lower()) and err.count("\n") == 1 and "Traceback" not in err, err[-3000:]
    assert not slurm(cluster, "squeue", "-h", "-t", "PD,R").strip()  # nothing waits or runs
