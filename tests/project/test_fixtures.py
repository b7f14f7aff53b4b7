"""The reference fixtures inside the repository are complete and unaltered (tests/fixtures/README.md),
and a test that would skip for a missing fixture fails instead."""
import hashlib
import json
import subprocess
import sys

import pytest

from conftest import FIXTURES, LTE_FIXTURES, ROOT

BUDGET = 50 * 2 ** 20  # bytes: the repository carries them


@pytest.mark.parametrize("folder", [FIXTURES, LTE_FIXTURES], ids=lambda p: p.name)
def test_every_fixture_matches_its_sha256(folder):
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    present = {p.name for p in folder.iterdir() if p.name != "SHA256SUMS"}
    assert present == set(listed), f"unlisted: {sorted(present - set(listed))}, missing: {sorted(set(listed) - present)}"
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_fixtures_fit_the_budget_and_checkpoints_are_the_originals_bytes():
    assert sum(p.stat().st_size for p in FIXTURES.parent.rglob("*") if p.is_file()) <= BUDGET
    for folder in (FIXTURES, LTE_FIXTURES):
        original = json.loads((folder / "manifest.json").read_text())["files"]
        checkpoints = list(folder.glob("ckpt_*.pth"))
        assert checkpoints, folder.name
        for path in checkpoints:  # the original's own checksums: the very files it wrote
            assert hashlib.sha256(path.read_bytes()).hexdigest() == original[path.name]["sha256"], path.name


def test_no_test_reads_fixtures_from_outside_the_repository():
    folder = "sha" + "red"  # built, so that neither this file nor a grep for the paths matches itself
    outside = ("..", "/" + folder), (f'"{folder}"', ' / "fixtures"')
    for path in (p for p in (ROOT / "tests").rglob("*.py") if "fixtures" not in p.parts):
        text = path.read_text()
        assert not any(a + b in text for a, b in outside), path.name


@pytest.mark.slow  # a whole pytest run in a fresh interpreter (torch imported by the conftest)
def test_a_skip_for_a_missing_fixture_is_a_failure(tmp_path):
    """The suite's conftest on two skipping tests: the missing fixture fails, the missing GPU skips."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_needs_a_fixture():\n    pytest.skip('fixture not found: ref.npz')\n\n"
        "def test_needs_a_gpu():\n    pytest.skip('needs a CUDA GPU')\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "1 failed, 1 skipped" in r.stdout, r.stdout[-2000:]
