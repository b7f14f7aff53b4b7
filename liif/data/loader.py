"""A framework-free DataLoader: batches of stacked numpy arrays, optionally from worker processes.

Hand-written because a framework's loader (torch.utils.data.DataLoader, jittor.dataset) would tie
the data pipeline to that framework: here both backends train on the same NumPy batches.

Batches depend only on (dataset, batch_size, shuffle, seed, epoch, drop_last): the shuffle
order comes from its own generator and every item draws its randomness from
(seed, epoch, index) inside the wrapper, so `num_workers` changes the speed, never the data,
and an epoch can start at any batch without making the items of the batches before it.
"""
import multiprocessing
import signal

import numpy as np

# The shuffle generator's third seed word. Item generators use the item index there
# (0 .. len-1), so this value keeps the two streams apart for any dataset under 2**31 items.
SHUFFLE_STREAM = 2**31 - 1

_worker_dataset = None


def _init_worker(dataset):
    global _worker_dataset
    _worker_dataset = dataset
    # A worker forked during training inherits the trainer's SIGTERM handler (which only sets a
    # flag), and Pool.terminate() stops workers with SIGTERM: restore the default, else the worker
    # keeps running and terminate() waits for it forever; leave Ctrl-C to the parent, which then
    # terminates the pool. SIGTERM came blocked from the fork (`_forked_pool`): one sent before this
    # point waited, and ends the worker now.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _forked_pool(num_workers, dataset):
    """A pool of forked workers whose SIGTERM is blocked until `_init_worker` has reset its handler
    (a worker still running the inherited one would take Pool.terminate()'s SIGTERM for the trainer's
    and live on). The parent's own SIGTERM, meanwhile, waits and then reaches its handler."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return multiprocessing.get_context("fork").Pool(num_workers, _init_worker, (dataset,))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _get_item(i):
    return _worker_dataset[i]


def len_batches(dataset, batch_size, drop_last=False, world_size=1):
    """Number of batches `iterate_batches` yields for `dataset` (or a length). With
    world_size > 1 a last partial batch too small to give every rank an item is dropped."""
    n = dataset if isinstance(dataset, int) else len(dataset)
    if drop_last or (world_size > 1 and n % batch_size and n % batch_size < world_size):
        return n // batch_size
    return -(-n // batch_size)


def batch_order(n, shuffle=False, seed=0, epoch=0):
    """The item indices of one epoch, in the order they are batched."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, SHUFFLE_STREAM]).permutation(n)


def collate(items):
    """A list of sample dicts -> one dict of arrays stacked on a new first axis."""
    return {k: np.stack([item[k] for item in items]) for k in items[0]}


def iterate_batches(dataset, batch_size, shuffle=False, seed=0, epoch=0, drop_last=False, num_workers=0,
                    rank=0, world_size=1, start_batch=0, stop_batch=None):
    """Yield the batches of one epoch as dicts of stacked numpy arrays.

    Batches [start_batch, stop_batch) of the epoch (stop_batch None: to its end), e.g. a resume
    in the middle of an epoch, or an epoch cut short by `train.max_steps_per_epoch`. The other
    batches are not made at all, and the ones yielded equal those of a full epoch, since an
    item depends on (seed, epoch, index) and not on the items made before it.

    `dataset.set_epoch(epoch)` is called first when it exists. With num_workers > 0 the
    items are made by a pool of forked processes (the dataset is inherited, not pickled)
    and come back in order, so the batches equal those of num_workers=0. Fork is
    POSIX-only; forking after a framework has started threads is allowed but best
    avoided (create the iterator before heavy framework work, or use num_workers=0).

    Distributed training: `batch_size` is the global batch; rank `rank` of `world_size`
    gets items [rank::world_size] of each global batch (the global order is that of a
    single process), and only makes those items.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = batch_order(len(dataset), shuffle, seed, epoch).tolist()
    n_batches = len_batches(len(order), batch_size, drop_last, world_size)
    order = order[:n_batches * batch_size]
    if world_size > 1:
        batches = [order[b * batch_size:(b + 1) * batch_size][rank::world_size] for b in range(n_batches)]
        order = [i for batch in batches for i in batch]
        sizes = [len(batch) for batch in batches]
    else:
        sizes = [min(batch_size, len(order) - b * batch_size) for b in range(n_batches)]
    order = order[sum(sizes[:start_batch]):sum(sizes[:stop_batch])]
    sizes = sizes[start_batch:stop_batch]

    if num_workers > 0:
        pool = _forked_pool(num_workers, dataset)
        items = pool.imap(_get_item, order, chunksize=max(1, batch_size // num_workers))
    else:
        pool, items = None, (dataset[i] for i in order)
    try:
        for size in sizes:
            yield collate([next(items) for _ in range(size)])
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def prefetch(batches, prepare):
    """`prepare(batch)` for each of `batches`, the next one made in a background thread while the
    caller works on the current one (loading, collation and the copy to the device then overlap
    the training step). The same batches in the same order; the thread's exceptions are raised here."""
    from concurrent.futures import ThreadPoolExecutor
    batches, end = iter(batches), object()

    def next_prepared():
        batch = next(batches, end)
        return end if batch is end else prepare(batch)

    pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
    ahead = pool.submit(next_prepared)
    try:
        while (batch := ahead.result()) is not end:
            ahead = pool.submit(next_prepared)
            yield batch
    finally:
        pool.shutdown(wait=True)  # the thread is done with `batches`
        if hasattr(batches, "close"):
            batches.close()  # a loader's worker processes stop now, not at garbage collection
