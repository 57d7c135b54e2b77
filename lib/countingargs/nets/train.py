"""The one trainer: train many networks at once, freezing each one when it reaches its target.

Every chapter that needs "train until the network reaches a target loss (or fits its data),
then keep it there" uses :func:`train_until`. The networks are given as a list of parameter
tensors that all carry the network index as their leading dimension ``M`` (the layout of
:class:`~countingargs.nets.mlp.BatchedMLP`, :func:`~countingargs.nets.mlp.forward` and the other
batched models); ``loss_fn`` returns one loss per network, and the optimiser is a
``torch.optim`` one applied to the batched tensors. SGD, Adam and AdamW are element-wise, so
one optimiser serves all networks and each network gets exactly the update it would get alone.

Freezing: at every check (every ``check_every`` steps, before the update) ``reached`` says
which networks have reached their target; their parameters at that moment are kept as final
and (with ``compact=True``, the default) they leave the batch: the remaining networks' leaves
and optimiser state are sliced, so finished networks cost nothing. The remaining networks have
all taken the same number of steps, so the optimiser's step counter stays exact. With
``compact=False`` every network keeps training and a snapshot is taken instead (for a
``loss_fn`` that cannot take a subset of networks); the kept parameters are the same.

Early stopping: ``keep_best(params, ids, step) -> (len(ids),)`` (a validation loss, say) is
evaluated at every check, and each network's parameters at its lowest score so far are kept
as well (``Trained.best_params``); a frozen network's best is the best it reached before it froze.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..stats import progress

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

#: ``loss_fn(params, ids, step) -> (len(ids),)``; ``params`` hold only the networks ``ids``.
LossFn = Callable[[Sequence[torch.Tensor], torch.Tensor, int], torch.Tensor]
#: ``reached(params, ids, step) -> bool (len(ids),)``, evaluated without gradients.
ReachedFn = Callable[[Sequence[torch.Tensor], torch.Tensor, int], torch.Tensor]
#: ``keep_best(params, ids, step) -> (len(ids),)``: a score to minimise (e.g. validation loss).
ScoreFn = Callable[[Sequence[torch.Tensor], torch.Tensor, int], torch.Tensor]


@dataclass
class Trained:
    """``params``: one tensor ``(M, ...)`` per parameter, network ``i`` as it was when it
    reached its target (its last state if it never did); ``reached (M,)`` bool; ``steps (M,)``
    the updates it had taken when it reached the target (``max_steps`` if never).
    With ``keep_best``: ``best_params`` (each network at its lowest score among the checks),
    ``best_steps (M,)`` and ``best_scores (M,)``; otherwise ``None``."""

    params: list[torch.Tensor]
    reached: np.ndarray
    steps: np.ndarray
    best_params: list[torch.Tensor] | None = None
    best_steps: np.ndarray | None = None
    best_scores: np.ndarray | None = None


def make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float, **options):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {sorted(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return OPTIMIZERS[name](list(params), lr=lr, **options)


def _compact(opt, work: list[torch.Tensor], keep: torch.Tensor):
    """New leaves holding rows ``keep`` of ``work``, and an optimiser of the same kind whose
    state is the old state's rows ``keep``."""
    new = [w.detach()[keep].clone().requires_grad_(True) for w in work]
    new_opt = type(opt)(new, **opt.defaults)
    for old_p, new_p in zip(work, new):
        state = opt.state.get(old_p)
        if not state:
            continue
        new_opt.state[new_p] = {
            k: (v[keep].clone() if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == old_p.shape[0]
                else v.clone() if torch.is_tensor(v) else v)
            for k, v in state.items()}
    return new, new_opt


def train_until(params: Sequence[torch.Tensor], loss_fn: LossFn, *, lr: float, max_steps: int,
                reached: ReachedFn | None = None, optimizer: str = "adam", check_every: int = 1,
                compact: bool = True, options: dict | None = None, desc: str = "",
                on_check: Callable[[Sequence[torch.Tensor], torch.Tensor, int], None] | None = None,
                keep_best: ScoreFn | None = None) -> Trained:
    """Train the ``M`` networks in ``params`` (not modified) by minimising ``sum(loss_fn(...))``.

    ``reached=None`` trains every network for ``max_steps``. ``on_check(params, ids, step)``
    is called at every check with the networks still training (e.g. to record curves).
    ``keep_best`` keeps each network's state of lowest score among the checks (ties: the
    earliest). ``options`` go to the optimiser (``betas``, ``weight_decay``, ``momentum``...).
    """
    if max_steps < 0 or check_every < 1:
        raise ValueError(f"need max_steps >= 0 and check_every >= 1, got {max_steps}, {check_every}")
    params = list(params)
    if not params:
        raise ValueError("train_until needs at least one parameter tensor")
    m = params[0].shape[0]
    if any(p.shape[0] != m for p in params):
        raise ValueError(f"every parameter needs the same leading (network) dimension; got "
                         f"{[tuple(p.shape) for p in params]}")
    device = params[0].device
    final = [p.detach().clone() for p in params]
    work = [p.detach().clone().requires_grad_(True) for p in params]
    opt = make_optimizer(optimizer, work, lr, **(options or {}))
    ids = torch.arange(m, device=device)
    active = torch.ones(m, dtype=torch.bool, device=device)     # only used when compact=False
    steps = torch.full((m,), max_steps, dtype=torch.long)
    done_mask = torch.zeros(m, dtype=torch.bool)
    best = [p.detach().clone() for p in params] if keep_best is not None else None
    best_score = torch.full((m,), float("inf"), device=device)
    best_step = torch.zeros(m, dtype=torch.long)
    bar = progress(total=max_steps, desc=desc) if desc else None
    for t in range(max_steps + 1):
        if keep_best is not None and (t % check_every == 0 or t == max_steps):
            with torch.no_grad():
                cur = [w.detach() if compact else w.detach()[active] for w in work]
                score = keep_best(cur, ids, t)
                if score.shape != ids.shape:
                    raise ValueError(f"keep_best() must return one score per network, shape "
                                     f"{tuple(ids.shape)}; got {tuple(score.shape)}")
                better = score < best_score[ids]
                if better.any():
                    for b, c in zip(best, cur):
                        b[ids[better]] = c[better]
                    best_score[ids[better]] = score[better]
                    best_step[ids[better].cpu()] = t
        if reached is not None and (t % check_every == 0 or t == max_steps):
            with torch.no_grad():
                cur = [w.detach() for w in work]
                if on_check is not None:
                    on_check(cur if compact else [c[active] for c in cur], ids, t)
                ok = reached(cur if compact else [c[active] for c in cur], ids, t).bool()
                if ok.shape != ids.shape:
                    raise ValueError(f"reached() must return one bool per network, shape "
                                     f"{tuple(ids.shape)}; got {tuple(ok.shape)}")
            if ok.any():
                new_ids = ids[ok]
                rows = ok if compact else active.nonzero().squeeze(1)[ok]
                for f, w in zip(final, work):
                    f[new_ids] = w.detach()[rows]
                steps[new_ids.cpu()] = t
                done_mask[new_ids.cpu()] = True
                if compact:
                    ids = ids[~ok]
                    if len(ids):
                        work, opt = _compact(opt, work, ~ok)
                else:
                    active[new_ids] = False
                    ids = ids[~ok]
        elif reached is None and on_check is not None and (t % check_every == 0 or t == max_steps):
            with torch.no_grad():
                on_check([w.detach() for w in work], ids, t)
        if len(ids) == 0 or t == max_steps:
            break
        sub = work if compact else work
        loss = loss_fn(sub, ids if compact else torch.arange(m, device=device), t)
        if loss.shape != ((len(ids),) if compact else (m,)):
            raise ValueError(f"loss_fn must return one loss per network; got shape {tuple(loss.shape)}")
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rest = ~done_mask
    if rest.any():
        rows = torch.arange(len(ids)) if compact else ids
        for f, w in zip(final, work):
            f[ids] = w.detach()[rows]
    if keep_best is None:
        return Trained(final, done_mask.numpy(), steps.numpy())
    return Trained(final, done_mask.numpy(), steps.numpy(), best, best_step.numpy(),
                   best_score.cpu().numpy())
