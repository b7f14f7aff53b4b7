"""Framework-neutral initial weights, so that `seed=` gives the same starting model on
PyTorch and Jittor (each framework's own initialiser draws different numbers).

The distribution is PyTorch's default for Conv2d and Linear (kaiming_uniform with a=sqrt(5)):
weights and biases uniform in +-1/sqrt(fan_in), fan_in = in_channels * kernel area. Frozen
tensors (EDSR's unused MeanShift convs) keep their fixed values.
"""
import numpy as np


def initial_state(state, seed, frozen=("sub_mean.", "add_mean.")):
    """A new {name: array} like `state`, drawn from a generator seeded by `seed`, key by key
    in sorted order (so adding a layer does not reshuffle the others' draws)."""
    out = dict(state)
    weights = {k[: -len("weight")]: v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2}
    for key in sorted(state):
        prefix = key[: key.rfind(".") + 1]
        if any(part in key for part in frozen) or prefix not in weights:
            continue
        fan_in = int(np.prod(weights[prefix].shape[1:]))
        bound = 1 / np.sqrt(fan_in)
        rng = np.random.default_rng([seed, _stable_hash(key)])
        out[key] = rng.uniform(-bound, bound, state[key].shape).astype(np.float32)
    return out


def _stable_hash(text):
    """A hash that does not change between processes (Python's str hash is salted)."""
    import zlib
    return zlib.crc32(text.encode())
