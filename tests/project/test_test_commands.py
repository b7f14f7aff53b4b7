"""The test command is written in one place for users (README.md) and run from it by CI (.ci/run): the
two stay the same, and the tiers that CONTRIBUTING.md and the suite's benchmark give are README's."""
import importlib.util
import re
import shlex

from conftest import ROOT


def readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the test suite:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    [command] = [line for line in block.splitlines() if "pytest" in line]
    return command.strip()


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == readme_test_command(), ".ci/run's last line is not README.md's test command"


def test_the_tiers_are_the_readmes_command_with_and_without_the_fast_marker():
    full = re.search(r"(python -m pytest [^&\n]*)$", readme_test_command()).group(1)
    fast = f'{full} -m "not slow"'
    for path in ("README.md", "CONTRIBUTING.md", "tests/README.md"):
        text = (ROOT / path).read_text()
        assert full in text and fast in text, path
    spec = importlib.util.spec_from_file_location("bench_test_suite", ROOT / "benchmarks" / "bench_test_suite.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert ["python", "-m", "pytest", *bench.FULL] == shlex.split(full)
    assert ["python", "-m", "pytest", *bench.FAST] == shlex.split(fast)
