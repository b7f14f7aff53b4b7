"""A training's run directory after a crash: what it may hold, and how a start puts it right.

The write order of one epoch's end (liif/training/trainer.py, Trainer.end_epoch), rank 0:
  1. TensorBoard: the epoch's scalars, then a flush (every event up to this step is on disk);
  2. `checkpoints/epoch-last.pth` (temp, fsync, rename): THE COMMIT. It holds the weights, the
     optimizer, the position, and the history rows of every epoch up to this one;
  3. what derives from it (`derive_from_last`): `epoch-N.pth` (every `epoch_save`) and
     `epoch-best.pth` (when this epoch has the best validation PSNR of the history) as copies of
     `epoch-last.pth`, then `history.csv` from its rows.
After the training, the test pass writes `samples/`, and `metrics.json` comes last of all.

So a SIGKILL anywhere leaves: the previous commit intact (or the new one complete), `.tmp-*`
files, and at most the derived files of the LAST committed epoch missing or stale (those of
every earlier epoch were complete before the next commit). On every start, rank 0 removes the
temps (`remove_temps`); on resume from the run's own `epoch-last.pth`, `derive_from_last` runs
again: it is idempotent, so it redoes exactly what the crash cut short. `history.csv` is rewritten
from the checkpoint's rows (a row the checkpoint lacks is dropped, one it has is added), and
`metrics.json` is written at the end from the same rows. TensorBoard is opened with
`purge_step` = the checkpoint's step + 1: the events of the steps that are run again are hidden.
"""
import filecmp
import logging
import os
import shutil

from liif.io import durable
from liif.io.durable import TEMP_PREFIX

log = logging.getLogger(__name__)


def remove_temps(out_dir):
    """Delete the `.tmp-*` files a killed writer left anywhere in the run directory. Only while
    this process holds the run (its lock), so no live writer owns them."""
    removed = []
    for folder, _, names in os.walk(out_dir):
        for name in names:
            if name.startswith(TEMP_PREFIX):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.relpath(os.path.join(folder, name), out_dir))
    if removed:
        log.warning("removed %d temporary file(s) that a killed run left: %s", len(removed), ", ".join(sorted(removed)))
    return removed


def holds_checkpoints(ckpt_dir):
    """Whether `ckpt_dir` holds a checkpoint (a temp file is not one)."""
    return os.path.isdir(ckpt_dir) and any(not n.startswith(TEMP_PREFIX) for n in os.listdir(ckpt_dir))


def best_epoch(history):
    """The epoch whose validation PSNR is the best of `history` (the first of equals, as the
    training's strict `>` picks it), or None without validations."""
    best = None
    for row in history:
        if row.get("val_psnr") is not None and (best is None or row["val_psnr"] > best["val_psnr"]):
            best = row
    return None if best is None else int(best["epoch"])


def derive_from_last(out_dir, history, epoch_save):
    """`epoch-N.pth`, `epoch-best.pth` and `history.csv` for the last epoch of `history`, whose
    end `checkpoints/epoch-last.pth` holds. Writes only what is missing or differs."""
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    last = os.path.join(ckpt_dir, "epoch-last.pth")
    epoch = int(history[-1]["epoch"]) if history else 0
    if epoch and epoch % epoch_save == 0:
        _copy_if_differs(last, os.path.join(ckpt_dir, f"epoch-{epoch}.pth"))
    if epoch and best_epoch(history) == epoch:
        _copy_if_differs(last, os.path.join(ckpt_dir, "epoch-best.pth"))
    rewrite_history(out_dir, history)


def rewrite_history(out_dir, history):
    """`history.csv` as the rows of `history` (removed when there are none yet)."""
    path = os.path.join(out_dir, "history.csv")
    text = history_text(history)
    if text is None:
        if os.path.exists(path):
            os.remove(path)
        return
    if not (os.path.isfile(path) and open(path).read() == text):
        durable.write_text(path, text)


def history_text(rows):
    """`history.csv`'s text for these rows; None when there are none."""
    if not rows:
        return None
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join("" if r.get(k) is None else f"{r[k]}" for k in keys) for r in rows]
    return "\n".join(lines) + "\n"


def _copy_if_differs(src, dst):
    if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
        return
    with open(src, "rb") as source:
        durable.write_atomic(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20))


def prepare(out_dir, resuming):
    """Rank 0, at the start of a training, the run directory claimed: the temps of a killed run
    go, and `checkpoints/` is made at once. It marks a training that has begun: `resume=true`
    after a kill before the first checkpoint finds it empty and starts from scratch in place,
    while `resume=true` in a folder that never trained stays an error."""
    remove_temps(out_dir)
    if not resuming:
        os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
