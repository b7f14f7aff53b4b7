"""The crafted checkpoints of tests/checkpoint_attacks.py through `python run.py task=demo` and
`task=test` (children of the CLI server), each under a memory cap: a run that succeeds with the
model's weights intact, or one `error:` line and exit 2; the run's peak resident memory within
`peak_bound` of the file above the same run on the clean checkpoint. The reader's limits
themselves, and `liif.load_model` on both frameworks: tests/unit/io/test_torchfile_bounds.py."""
import os

import pytest

from checkpoint_attacks import ATTACKS, CAP, clean, peak_bound, write_attacks
from conftest import photo, run_cli

# Run first in the child: the cap on its address space, and its peak resident memory written at exit
PRELUDE = '''
import atexit, resource
def _status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + {cap}, resource.RLIM_INFINITY))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak starts from here
_before = _status("VmRSS")
atexit.register(lambda: open({out!r}, "w").write(str(_status("VmHWM") - _before)))
'''


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "imgs").mkdir()
    for i in range(2):
        photo(folder / "imgs" / f"{i}.png", size=(24, 24))
    return {"files": write_attacks(folder / "attacks"), "clean": str(clean(folder / "clean.pth")),
            "image": str(photo(folder / "in.png", size=(12, 12))), "folder": str(folder / "imgs")}


def run_capped(task, checkpoint, inputs, out):
    """`python run.py task=<task> checkpoint=<checkpoint>` under the cap; (the process, its peak)."""
    out.mkdir()
    args = {"demo": [f"input={inputs['image']}", "size=[24,24]", f"output={out / 'o.png'}"],
            "test": ["dataset=folder", f"dataset.path={inputs['folder']}", "scales=[2]"]}[task]
    r = run_cli(f"task={task}", f"checkpoint={checkpoint}", *args, "device=cpu", "framework.threads=1",
                f"hydra.run.dir={out / 'run'}", timeout=300, prelude=PRELUDE.format(cap=CAP, out=str(out / "peak")),
                env={"OMP_NUM_THREADS": "1"})
    return r, int((out / "peak").read_text())


@pytest.fixture(scope="module")
def clean_peaks(inputs, tmp_path_factory):
    peaks = {}
    for task in ("demo", "test"):
        r, peaks[task] = run_capped(task, inputs["clean"], inputs, tmp_path_factory.mktemp(f"clean-{task}") / "out")
        assert r.returncode == 0, r.stderr[-3000:]
    return peaks


@pytest.mark.slow
@pytest.mark.parametrize("task", ["demo", "test"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_crafted_checkpoint_through_the_cli_under_a_memory_cap(inputs, clean_peaks, tmp_path, task, name):
    path, expected = inputs["files"][name], ATTACKS[name][1]
    r, peak = run_capped(task, path, inputs, tmp_path / "out")
    if expected is None:
        assert r.returncode == 0, r.stderr[-3000:]
        assert task != "demo" or os.path.getsize(tmp_path / "out" / "o.png") > 0
    else:
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
        assert expected in lines[0] and "Traceback" not in r.stderr, lines
    assert peak <= clean_peaks[task] + peak_bound(path), (peak, clean_peaks[task])
