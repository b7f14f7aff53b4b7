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
