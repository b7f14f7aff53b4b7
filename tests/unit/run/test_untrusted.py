"""A run folder from someone else (liif/run/untrusted.py): links out of it, files written in place that
are not plain files, and Hydra's overrides.yaml read within bounds (aliases, nesting, size)."""
import os
import time
import tracemalloc

import pytest

from liif.errors import RunDirError
from liif.run.untrusted import check_folder, inside, printable, read_string_list


def billion_laughs(levels=9):
    """Nine aliases of nine aliases ...: a few hundred bytes of YAML, 9**9 strings once expanded."""
    text = "- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"- &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


def test_a_list_of_strings_is_read_as_hydra_writes_it(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("- model=rdn_liif\n- scales=[2,3]\n- 'dataset.path=/a b'\n- train.epochs=3\n")
    assert read_string_list(path) == ["model=rdn_liif", "scales=[2,3]", "dataset.path=/a b", "train.epochs=3"]
    for empty in ("", "[]\n", "null\n", "---\n"):
        path.write_text(empty)
        assert read_string_list(path) == []


@pytest.mark.parametrize("text, words", [
    (billion_laughs(), "aliases"), ("- &x a=1\n- *x\n", "aliases"), ("[" * 30_000 + "]" * 30_000, "nested list"),
    ("- a=1\n" * 20_000, "over 64.0 KB"), ("a: 1\n", "mapping"), ("- {a: 1}\n", "mapping"), ("- [a=1]\n", "nested list"),
    ("- a=1\n---\n- b=2\n", "several YAML documents"), ("just text\n", "single value"),
    ("- a=1\n- 'unterminated\n", "not valid YAML"),
], ids=["billion laughs", "one alias", "nested 30000 deep", "over 64 KB", "a mapping", "a mapping item", "a list item",
        "two documents", "a scalar", "broken"])
def test_anything_but_a_flat_list_of_strings_is_refused_in_bounded_time_and_memory(tmp_path, text, words):
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(RunDirError, match=words) as e:
            read_string_list(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 20  # expanded, the bomb never ends (str() of it: 9**9 'lol's)
    assert peak < 32 << 20
    assert "\n" not in str(e.value)


def test_bytes_that_are_not_utf8_a_folder_and_a_fifo_are_refused_without_blocking(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_bytes(b"- a=\xff\n")
    with pytest.raises(RunDirError, match="not UTF-8"):
        read_string_list(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(RunDirError, match="a folder, not a regular file"):
        read_string_list(path)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RunDirError, match="a fifo, not a regular file"):  # opened without waiting for a writer
        read_string_list(fifo)


def run_like(folder):
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch-last.pth").write_bytes(b"weights")
    (folder / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    return folder


def test_links_that_stay_in_the_folder_pass_links_out_are_named(tmp_path):
    run = run_like(tmp_path / "run")
    (run / "checkpoints" / "epoch-best.pth").symlink_to("epoch-last.pth")
    (run / "ckpt").symlink_to(run / "checkpoints")
    check_folder(run)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name, target in [("tb", outside), ("checkpoints/epoch-last.pth", outside / "x.pth"),
                         ("samples", "../outside"), (".hydra/config.yaml", "/etc/passwd"), ("loop", "loop"),
                         ("up", ".."), ("name\nwith a line break", "/")]:
        path = run / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.symlink_to(target)
        if name == "loop":  # a link to itself resolves to itself, inside: harmless, nothing reaches out
            check_folder(run)
            path.unlink()
            continue
        with pytest.raises(RunDirError, match="outside") as e:
            check_folder(run)
        assert "\n" not in str(e.value)
        path.unlink()
    check_folder(run)


def test_files_written_in_place_must_be_plain_files_of_their_own(tmp_path):
    run = run_like(tmp_path / "run")
    in_place = [".hydra/config.yaml", "run.log"]
    check_folder(run, in_place)  # absent: fine
    os.mkfifo(run / "run.log")  # Hydra's log handler would wait for a reader forever
    with pytest.raises(RunDirError, match="a fifo, not a regular file"):
        check_folder(run, in_place)
    (run / "run.log").unlink()
    elsewhere = tmp_path / "yours.txt"
    elsewhere.write_text("keep me")
    os.link(elsewhere, run / ".hydra" / "config.yaml")  # a second name of a file outside
    with pytest.raises(RunDirError, match="2 names"):
        check_folder(run, in_place)


def test_a_folder_of_too_many_entries_is_refused(tmp_path, monkeypatch):
    import liif.run.untrusted as untrusted
    monkeypatch.setattr(untrusted, "MAX_ENTRIES", 10)
    run = run_like(tmp_path / "run")
    for i in range(10):
        (run / f"f{i}").write_text("")
    with pytest.raises(RunDirError, match="over 10 files"):
        check_folder(run)


def test_inside_resolves_every_link(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "ab").mkdir()
    assert inside(tmp_path / "a" / "x", tmp_path / "a") and inside(tmp_path / "a", tmp_path / "a")
    assert not inside(tmp_path / "ab" / "x", tmp_path / "a")  # a prefix of the name is not the folder
    (tmp_path / "a" / "out").symlink_to(tmp_path / "ab")
    assert not inside(tmp_path / "a" / "out" / "x", tmp_path / "a")


def test_printable_is_one_line_without_terminal_codes():
    assert printable("a\nb\x1b]52;c;ZXZpbA==\x07") == "a\\nb\\x1b]52;c;ZXZpbA==\\x07"
    assert printable("x" * 500, 10) == "x" * 10 + "..."
