"""The published PSNR numbers (LIIF's Tables 1-4, LTE's table `lte`) as data, from `paper_results.yaml`.

`tables()` -> {table: {"title", "key", "columns", "rows", ...}} (a table is a number, LIIF's
paper, or a name: `lte`); `lookup(table, row, column)` -> float or None, where `column` is a
scale (int) for Tables 1 and 3, `(set, scale)` for Table 2 and `lte`, and a test-set name for
Table 4. `columns(spec, set)` are a set's columns (`lte`: one list per set). `SOURCE` names where
LIIF's numbers come from; a table with its own `source` (and `protocol`) says so itself.
"""
import functools
import os

import yaml

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_results.yaml")


@functools.lru_cache(maxsize=1)
def _data():
    with open(PATH) as f:
        return yaml.safe_load(f)


SOURCE = " ".join(_data()["source"].split())


def tables():
    """{table number (int) or name (str): its description}; rows keep the paper's order."""
    return {_as_int(k): v for k, v in _data()["tables"].items()}


def columns(spec, set_name=None):
    """The columns of `spec` (a table's description) for the test set `set_name`: its list,
    or, where the columns differ per set (`lte`: DIV2K x2-x30, the benchmarks x2-x8), that set's."""
    cols = spec["columns"]
    return list(cols.get(set_name, [])) if isinstance(cols, dict) else list(cols)


def table(number):
    return tables().get(_as_int(number))


def lookup(number, row, column):
    """The paper's PSNR for (table, row, column), or None when it reports none."""
    t = table(number)
    if t is None or row not in t["rows"]:
        return None
    values = t["rows"][row]
    if t["key"] == "set_scale":
        name, scale = column
        values = values.get(name)
        column = scale
        if values is None:
            return None
        cols = columns(t, name)
    else:
        cols = columns(t)
    try:
        return values[cols.index(column)]
    except (ValueError, IndexError):
        return None


def _as_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return x
