"""Memory budgets for inference (`max_memory`, liif/inference/memory.py); the up-front fit check is tested
in tests/cli/test_hardening.py."""
import pytest

from liif.errors import LiifError
from liif.errors import BudgetTooSmall
from liif.inference.memory import resolve_budget
from liif.sizes import format_bytes, parse_bytes


@pytest.mark.parametrize("text, expected", [("2GB", 2 << 30), ("512MB", 512 << 20), ("1.5GiB", 3 << 29),
                                            ("64kb", 64 << 10), ("300", 300), (4096, 4096), (" 3 G ", 3 << 30)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "GB", "-2GB", "0", "2XB", "two GB", 0, -5, True, float("inf"), float("nan"),
                                 "9" * 400 + "GB", "9" * 400, 10 ** 400, 1e308, 2 ** 63, "8388609TB"])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError) as refused:  # never an OverflowError (a traceback)
        parse_bytes(bad)
    assert len(str(refused.value)) < 200  # a 400-digit number is cut in the message


def test_parse_bytes_takes_up_to_8_exabytes():
    assert parse_bytes(2 ** 63 - 1) == 2 ** 63 - 1 and parse_bytes("8388607TB") == 8388607 << 40


def test_resolve_budget():
    assert resolve_budget("auto", available=8 << 30) == 4 << 30
    assert resolve_budget("1GB") == 1 << 30
    assert resolve_budget("auto") > 0  # half of this machine's available memory
    with pytest.raises(BudgetTooSmall, match="max_memory"):
        resolve_budget("lots")
    assert isinstance(BudgetTooSmall("x"), LiifError)  # one line, exit 2, in the CLI


def test_format_bytes():
    assert format_bytes(512) == "512 B" and format_bytes(3 << 30) == "3.0 GB" and format_bytes(1536) == "1.5 KB"
