"""The test suite's wall time, its two tiers and an earlier commit's suite, in one run (issue 19).

    python benchmarks/bench_test_suite.py                    # the full suite and the fast tier, as README says
    python benchmarks/bench_test_suite.py --before a18ce24   # first that commit's suite, as its README said

Each command runs in turn on this machine (run it idle: the suite is CPU-bound), in a fresh process,
and is timed from start to end. `--before REF` checks REF out in a temporary git worktree and runs
`python -m pytest` there (the README's command before the suite ran on pytest-xdist), with PYTHONPATH
set so that REF's own `liif` is the one imported. Prints a Markdown table: the command, the wall
time, pytest's summary line, and each command's `--durations` list below it (--durations N).
Exit status 1 when a command failed, 2 when REF cannot be checked out. Killed outright, it leaves
its worktree (`git worktree list` names it; `git worktree remove --force PATH` removes it).
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
    """Run `python -m pytest ARGS` in `cwd`; returns (seconds, exit status, summary line, durations block)."""
    command = [sys.executable, "-m", "pytest", "-q", f"--durations={durations}", *args]
    start = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    lines = done.stdout.splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)),
                   f"exit status {done.returncode}, no summary")
    slowest = next((i for i, line in enumerate(lines) if "slowest" in line), len(lines))
    block = [line for line in lines[slowest + 1:] if re.match(r"\s*\d+\.\d+s ", line)]
    return seconds, done.returncode, summary, "\n".join(block)


def checked_out(ref, tree):
    """`git worktree add` of `ref` at `tree`; a one-line error (exit 2) when git cannot."""
    done = subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines() or [f"git exited with {done.returncode}"]
        print(f"error: cannot check out {ref!r}: {said[-1]}", file=sys.stderr)
        sys.exit(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REF", help="also time this commit's suite first (sequential, as it was)")
    parser.add_argument("--durations", type=int, default=30, help="pytest's slowest-N list for each command (0: all)")
    args = parser.parse_args()
    if args.durations < 0:
        parser.error(f"--durations must be 0 or more, not {args.durations}")
    rows = []
    if args.before:
        with tempfile.TemporaryDirectory(prefix="liif-before-") as folder:
            tree = Path(folder) / "tree"
            checked_out(args.before, tree)
            try:
                env = {**os.environ, "PYTHONPATH": str(tree)}
                rows.append((f"{args.before}: python -m pytest", *timed_pytest(tree, ["-p", "no:xdist"], args.durations, env)))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    rows.append(("python -m pytest " + " ".join(FULL), *timed_pytest(ROOT, FULL, args.durations)))
    rows.append(("python -m pytest " + " ".join(FULL) + ' -m "not slow"', *timed_pytest(ROOT, FAST, args.durations)))
    print("| command | wall | pytest |\n|---|---|---|")
    for command, seconds, _, summary, _ in rows:
        print(f"| `{command}` | {int(seconds // 60)}:{seconds % 60:04.1f} | {summary} |")
    for command, _, _, _, block in rows:
        print(f"\n`{command}`, slowest {args.durations}:\n```\n{block}\n```")
    # a suite that failed has no time worth quoting: say so in the exit status too
    return 1 if any(status != 0 for _, _, status, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
