"""Framework-free helpers of the backends (liif/backends/common.py): what makes a run distributed."""
import pytest

from liif.backends.common import TORCHRUN_VARIABLES, torchrun_world
from liif.errors import FrameworkError

TORCHRUN = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("environ", [
    {}, {"WORLD_SIZE": "1"}, {"WORLD_SIZE": " 1 "},
    {"RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "node0"},  # a shell in a cluster job: no WORLD_SIZE
    {**TORCHRUN, "WORLD_SIZE": "1", "RANK": "0"},                # torchrun --nproc_per_node=1
    {"WORLD_SIZE": "1", "RANK": "7", "LOCAL_RANK": "x"},          # stray and inconsistent, but one process
])
def test_a_plain_run_is_one_process_whatever_else_the_environment_holds(environ):
    assert torchrun_world(environ) is None


def test_torchruns_full_set_is_a_distributed_run():
    assert torchrun_world(TORCHRUN) == (3, 1, 4)
    assert set(TORCHRUN) == set(TORCHRUN_VARIABLES)


@pytest.mark.parametrize("environ, words", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not"),
    ({**TORCHRUN, "MASTER_ADDR": ""}, "but MASTER_ADDR is not"),
    ({k: v for k, v in TORCHRUN.items() if k != "LOCAL_RANK"}, "but LOCAL_RANK is not"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' in the environment must be a positive integer"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"), ({"WORLD_SIZE": "-2"}, "WORLD_SIZE='-2'"),
    ({**TORCHRUN, "RANK": "4"}, "RANK='4' in the environment must be an integer from 0 to 3"),
    ({**TORCHRUN, "RANK": "-1"}, "RANK='-1'"), ({**TORCHRUN, "LOCAL_RANK": "a"}, "LOCAL_RANK='a'"),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, "MASTER_PORT='70000' in the environment must be an integer from 1 to 65535"),
])
def test_a_partial_or_inconsistent_set_is_one_line_naming_the_variables(environ, words):
    with pytest.raises(FrameworkError, match="^[^\n]*$") as refused:  # one line
        torchrun_world(environ)
    assert words in str(refused.value) and "env -u WORLD_SIZE" in str(refused.value) and "torchrun" in str(refused.value)


# ---- srun -n N: SLURM's variables (measured on a Slurm 22.05 cluster: tests/slurm/) ------------------------------
from liif.backends.common import SLURM_VARIABLES, first_host, slurm_world  # noqa: E402

SRUN = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "gpu[07-08]"}
BATCH_SCRIPT = {"SLURM_JOB_ID": "2", "SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                "SLURM_JOB_NODELIST": "vm", "SLURM_NODELIST": "vm"}  # sbatch -n 2 running python directly


@pytest.mark.parametrize("environ", [
    {}, BATCH_SCRIPT,
    {**SRUN, "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "1"},  # srun -n 1, or a shell in `srun --pty bash`
    {"SLURM_PROCID": "1", "SLURM_NTASKS": "8"},                    # stray, without a step
])
def test_outside_a_step_of_several_tasks_a_run_is_one_process(environ):
    assert slurm_world(environ) is None


def test_a_task_of_srun_joins_the_first_node_at_a_port_of_its_job_and_step():
    rank, local_rank, world, master, port = slurm_world(SRUN)
    assert (rank, local_rank, world, master) == (3, 1, 4, "gpu07")
    assert 20000 <= port < 40000 and slurm_world({**SRUN, "SLURM_PROCID": "0"})[4] == port  # every task: the same
    assert slurm_world({**SRUN, "SLURM_STEP_ID": "1"})[4] != port  # two steps of one job at once: two groups
    assert slurm_world({**SRUN, "MASTER_PORT": "29500"})[4] == 29500
    assert set(SLURM_VARIABLES) <= set(SRUN)


@pytest.mark.parametrize("environ, words", [
    ({"SLURM_STEP_NUM_TASKS": "2"}, "SLURM_STEP_NUM_TASKS=2 is set but SLURM_PROCID, SLURM_LOCALID"),
    ({**SRUN, "SLURM_STEP_NODELIST": ""}, "but SLURM_STEP_NODELIST is not"),
    ({**SRUN, "SLURM_PROCID": "4"}, "SLURM_PROCID='4' in the environment must be an integer from 0 to 3"),
    ({**SRUN, "SLURM_STEP_NUM_TASKS": "x"}, "SLURM_STEP_NUM_TASKS='x'"),
    ({**SRUN, "MASTER_PORT": "0"}, "MASTER_PORT='0'"),
])
def test_a_partial_or_inconsistent_step_is_one_line_naming_the_variables(environ, words):
    with pytest.raises(FrameworkError, match="^[^\n]*$") as refused:
        slurm_world(environ)
    assert words in str(refused.value) and "srun -n N" in str(refused.value)


@pytest.mark.parametrize("nodelist, host", [
    ("vm", "vm"), ("gpu[07-09,12]", "gpu07"), ("gpu[12,07-09]", "gpu12"), ("a1,b[2-3]", "a1"),
    ("rack[2-3]-n1", "rack2-n1"), ("node-[001-004],x", "node-001"),
])
def test_the_first_host_of_a_slurm_host_list(nodelist, host):
    assert first_host(nodelist) == host
