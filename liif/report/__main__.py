"""`python -m liif.report SWEEP_DIR [...]`."""
import sys

from liif.report import cli

sys.exit(cli())
