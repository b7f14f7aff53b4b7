"""The test suite's wall time, its two tiers and an earlier commit's suite, in one run (issue 19).

    python benchmarks/bench_test_suite.py                    # the full suite and the fast tier, as README says
    python benchmarks/bench_test_suite.py --before a18ce24   # first that commit's suite, as its README said

Each command runs in turn on this machine (run it idle: the suite is CPU-bound), in a fresh process,
and is timed from start to end. `--before REF` checks REF out in a temporary git worktree and runs
`python -m pytest` there (the README's command before the suite ran on pytest-xdist), with PYTHONPATH
set so that REF's own `liif` is the one imported. Prints a Markdown table: the command, the wall
time, pytest's summary line, and each command's `--durations` list below it (--durations N).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the two tiers as README.md and CONTRIBUTING.md give them
FULL = ["-n", "auto", "--dist", "loadgroup"]
FAST = [*FULL, "-m", "not slow"]


def timed_pytest(cwd, args, durations, env=None):
    """Run `python -m pytest ARGS` in `cwd`; returns (seconds, summary line, durations block)."""
    command = [sys.executable, "-m", "pytest", "-q", f"--durations={durations}", *args]
    start = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    lines = done.stdout.splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)),
                   f"exit status {done.returncode}, no summary")
    block = []
    if any("slowest" in line for line in lines):
        start_at = next(i for i, line in enumerate(lines) if "slowest" in line)
        block = [line for line in lines[start_at + 1:] if re.match(r"\s*\d+\.\d+s ", line)]
    return seconds, summary, "\n".join(block)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REF", help="also time this commit's suite first (sequential, as it was)")
    parser.add_argument("--durations", type=int, default=30, help="pytest's slowest-N list for each command")
    args = parser.parse_args()
    rows = []
    if args.before:
        with tempfile.TemporaryDirectory(prefix="liif-before-") as folder:
            tree = Path(folder) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True,
                           capture_output=True)
            try:
                env = {**os.environ, "PYTHONPATH": str(tree)}
                rows.append((f"{args.before}: python -m pytest", *timed_pytest(tree, ["-p", "no:xdist"], args.durations, env)))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    rows.append(("python -m pytest " + " ".join(FULL), *timed_pytest(ROOT, FULL, args.durations)))
    rows.append(("python -m pytest " + " ".join(FULL) + ' -m "not slow"', *timed_pytest(ROOT, FAST, args.durations)))
    print("| command | wall | pytest |\n|---|---|---|")
    for command, seconds, summary, _ in rows:
        print(f"| `{command}` | {int(seconds // 60)}:{seconds % 60:04.1f} | {summary} |")
    for command, _, _, block in rows:
        print(f"\n`{command}`, slowest {args.durations}:\n```\n{block}\n```")


if __name__ == "__main__":
    main()
