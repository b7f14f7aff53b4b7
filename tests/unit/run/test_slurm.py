"""liif/run/slurm.py: the job a run records, and when a run is its own SLURM job started again."""
from liif.run import slurm

JOB = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_PARTITION": "gpu",
       "SLURM_JOB_NODELIST": "gpu07", "SLURM_RESTART_COUNT": "2", "HOME": "/root"}


def test_the_job_is_recorded_from_slurms_variables_only():
    assert slurm.job({"HOME": "/root"}) is None
    assert slurm.job(JOB) == {"job_id": "41", "array_job_id": "40", "array_task_id": "1", "restart_count": "2",
                              "partition": "gpu", "nodes": "gpu07"}
    assert len(slurm.job({"SLURM_JOB_ID": "1" * 10_000})["job_id"]) == 200  # bounded


def test_only_a_restarted_job_whose_folder_holds_its_run_continues_there(tmp_path):
    (tmp_path / "config.yaml").write_text("task: train\n")
    assert slurm.requeued(str(tmp_path), JOB)
    assert not slurm.requeued(str(tmp_path), {**JOB, "SLURM_RESTART_COUNT": "0"})  # its first start
    assert not slurm.requeued(str(tmp_path), {k: v for k, v in JOB.items() if k != "SLURM_RESTART_COUNT"})
    assert not slurm.requeued(str(tmp_path), {**JOB, "SLURM_RESTART_COUNT": "x"})
    assert not slurm.requeued(str(tmp_path), {"SLURM_RESTART_COUNT": "1"})  # not in a SLURM job
    assert not slurm.requeued(str(tmp_path / "new"), JOB)  # nothing there yet: a fresh start


def test_a_folder_whose_record_names_another_job_or_none_is_not_taken_over(tmp_path):
    """A finished plain run, or another job's, stays refused to stray SLURM variables (a shell in an
    allocation); a record of this job, or none (an earlier start killed outright), is continued."""
    import json
    (tmp_path / "config.yaml").write_text("task: train\n")
    metrics = tmp_path / "metrics.json"
    for record, continued in [({"status": "ok"}, False), ({"status": "ok", "slurm": {"job_id": "40"}}, False),
                              ({"status": "interrupted", "slurm": {"job_id": "41"}}, True), ([1], False)]:
        metrics.write_text(json.dumps(record))
        assert slurm.requeued(str(tmp_path), JOB) is continued, record
    metrics.write_text("{not json")
    assert not slurm.requeued(str(tmp_path), JOB)
