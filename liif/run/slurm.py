"""What a run knows of the SLURM job it runs in: the job's ids (recorded in metrics.json, so that a
folder says which job wrote it and `sacct -j <id>` finds its accounting), and whether this process is
that job started again after a requeue: preemption, `scontrol requeue`, or submitit's requeue before
the time limit. A requeued job continues in its own folder, as `resume=<folder>` would.

Read from the environment SLURM gives every job; nothing here calls SLURM."""
import json
import os
from typing import Dict, Mapping, Optional

# metrics.json's `slurm` entry: its key -> the variable it comes from
JOB_VARIABLES = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
                 "restart_count": "SLURM_RESTART_COUNT", "partition": "SLURM_JOB_PARTITION",
                 "nodes": "SLURM_JOB_NODELIST", "step_tasks": "SLURM_STEP_NUM_TASKS"}


def job(environ: Optional[Mapping[str, str]] = None) -> Optional[Dict[str, str]]:
    """The SLURM job of this process ({job_id, array_job_id, array_task_id, restart_count, partition,
    nodes, step_tasks}, those SLURM set, as strings), or None outside SLURM."""
    environ = os.environ if environ is None else environ
    if not environ.get("SLURM_JOB_ID"):
        return None
    return {key: environ[name][:200] for key, name in JOB_VARIABLES.items() if environ.get(name)}


def requeued(out_dir: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when this process is a SLURM job started again (SLURM_RESTART_COUNT of 1 or more) and
    `out_dir` already holds this run: its config.yaml, and a metrics.json that names this job (an
    earlier start that was killed outright wrote none; one that names another job, or none, is
    another run's, which stray SLURM variables in a shell must not take over). Hydra's run folder of
    a job is fixed when the job is submitted, so the folder is the one its first start wrote."""
    environ = os.environ if environ is None else environ
    restarts = environ.get("SLURM_RESTART_COUNT", "").strip()
    if not (environ.get("SLURM_JOB_ID") and restarts.isdigit() and int(restarts) >= 1
            and os.path.isfile(os.path.join(out_dir, "config.yaml"))):
        return False
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            recorded = json.load(f).get("slurm") or {}
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):  # unreadable: not shown to be this job's
        return False
    return isinstance(recorded, dict) and recorded.get("job_id") == job(environ)["job_id"]
