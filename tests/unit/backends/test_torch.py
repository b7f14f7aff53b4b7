"""liif.backends.torch where a checkpoint's arrays meet the optimizer: the checkpoint reader gives
views that may share a storage or repeat one element (liif.io.torchfile), and Adam updates its
state in place."""
import numpy as np
import pytest
import torch

from liif.backends import torch as T


def _adam():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    opt = torch.optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return params, opt


def test_optimizer_state_from_views_gets_memory_of_its_own():
    params, opt = _adam()
    sd = T.optimizer_state_numpy(opt)
    storage = np.full(4, 0.5, np.float32)
    sd["state"][0]["exp_avg"] = storage[:3]  # a view
    sd["state"][0]["exp_avg_sq"] = np.lib.stride_tricks.as_strided(storage, (3,), (0,))  # one element, three times
    sd["state"][1]["exp_avg"] = sd["state"][1]["exp_avg_sq"] = storage.reshape(2, 2)  # two moments, one storage
    params2, opt2 = _adam()
    T.load_optimizer_state_numpy(opt2, sd)
    for p in params2:
        p.grad = torch.ones_like(p)
    opt2.step()  # in place: it would fail on the repeated element, and mix the shared ones
    assert (storage == 0.5).all()
    st = opt2.state[params2[1]]
    assert not np.shares_memory(st["exp_avg"].numpy(), st["exp_avg_sq"].numpy())


def test_optimizer_state_of_another_shape_is_refused_before_it_is_copied():
    params, opt = _adam()
    sd = T.optimizer_state_numpy(opt)
    sd["state"][0]["exp_avg"] = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (10 ** 6, 10 ** 6), (0, 0))
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(1000000, 1000000\), not \(3,\)"):
        T.load_optimizer_state_numpy(_adam()[1], sd)
    sd = T.optimizer_state_numpy(opt)
    sd["param_groups"][0]["params"] = [0]
    with pytest.raises(ValueError, match="doesn't match the size"):  # torch's own check of the groups
        T.load_optimizer_state_numpy(_adam()[1], sd)
