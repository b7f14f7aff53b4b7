"""One training step, framework-neutral: the original's L1 loss, then the backend's gradient step.

    loss = train_step(backend, model, optimizer, batch)   # batch: inp, coord, cell, gt (normalised)

The backend only offers the primitives (`zero_grad`, `backward`, `step`, `autocast`, `scalar`);
what is computed, and in which order, is here, the same for every framework.
"""
import numpy as np


def l1_loss(pred, gt):
    """The original's loss: mean |pred - gt|, in gt's float type (a bf16 prediction under autocast
    is cast to float32 first, so the loss and its gradient start in float32)."""
    if pred.dtype != gt.dtype:
        pred = pred.float()
    return (pred - gt).abs().mean()


def train_step(backend, model, optimizer, batch, precision="fp32", loss_scale=1.0):
    """One L1 step on a batch (a dict of inp, coord, cell, gt: numpy arrays, or `backend.batch_to_device`'s);
    returns the loss times `loss_scale` (a rank's share of the global batch: its gradients, averaged
    over the ranks, are then those of the global batch's mean). precision 'bf16': the forward under
    bfloat16 autocast (PyTorch), the loss in float32."""
    like = next(iter(model.parameters()))
    inp, coord, cell, gt = (backend.tensor(batch[k], like) if isinstance(batch[k], np.ndarray) else batch[k]
                            for k in ("inp", "coord", "cell", "gt"))
    with backend.autocast(precision, backend.device_of(like)):
        pred = model(inp, coord, cell)
    loss = l1_loss(pred, gt)
    if loss_scale != 1:
        loss = loss * backend.scalar(loss_scale, loss)
    backend.zero_grad(optimizer)
    backend.backward(loss, optimizer)
    backend.step(optimizer)
    return float(loss.item())
