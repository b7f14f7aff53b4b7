"""The paper's published PSNR numbers (Tables 1-4) as data, from `paper_results.yaml`.

`tables()` -> {table: {"title", "key", "columns", "rows", ...}}; `lookup(table, row, column)`
-> float or None, where `column` is a scale (int) for Tables 1 and 3, `(set, scale)` for
Table 2 and a test-set name for Table 4. `SOURCE` names where the numbers come from.
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
    """{table number (int): its description}; rows keep the paper's order."""
    return {int(k): v for k, v in _data()["tables"].items()}


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
    try:
        return values[t["columns"].index(column)]
    except ValueError:
        return None


def _as_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return x
