"""Chapter 07 experiments: the speed tax of an extra computation, and the slack of training.

Inputs are ``n_bits`` fair coins in {-1, +1}. The *main task* (see :mod:`.task`) is a noisy
label with two parity features on blocks 0 and 1 (``k`` bits each). Data are drawn *online*:
every step every network draws a fresh batch from a counter-based stream that depends only on
(stream, network key, step) (:func:`countingargs.nets.seeding.counter_uniform`), so held-out
loss is the population loss and a network's data do not depend on which other networks share
its batch. Held-out losses are computed exactly over the label noise: on a fixed set of inputs
per stratum, the cross-entropy against the true ``P(y=+1 | stratum)``, weighted by the strata's
probabilities (:func:`eval_metrics`).

Three experiments, each returning a tidy DataFrame:

- :func:`run_tax` -- the *tax*: the same network (same initial weights) trained on the main task
  alone (``plain``), with an extra head that must compute a ``k_check``-bit parity of block 2
  on every input while the main output ignores it (``overhead``), or with the main output
  multiplied by the extra head's confidence (``gated``: the output reads the check).
- :func:`run_slack` -- the *slack*: networks trained on the two-feature task at a grid of gaps
  between the two solutions, from scratch, and (the path-dependence probe) after pre-training
  on a task where only the worse feature predicts the label.
- the same function at other learning rates, batch sizes, initial scales and optimisers.

The heavy loops are chunks of :func:`countingargs.chunks.map_chunks` (one per architecture), so
the full profile can run them on a Dask cluster; results do not depend on where they ran.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ...chunks import map_chunks
from ...nets import losses
from ...nets.mlp import BatchedMLP, forward
from ...nets.seeding import counter_uniform, generator, seed_int
from ...nets.train import train_until
from . import task

CONDITIONS = ("plain", "overhead", "gated")
EPS_UNINFORMATIVE = 0.5     # the better feature during pre-training on the worse solution


# ---------------------------------------------------------------------------------------------
# data
def _pm(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0.5, -1.0, 1.0)


def set_parity(x: torch.Tensor, start: int, k: int, value: torch.Tensor) -> None:
    """In place: make the product of bits ``[start, start + k)`` of ``x (..., n)`` equal
    ``value (...)`` by setting the block's last bit."""
    if k == 1:
        x[..., start] = value
    else:
        x[..., start + k - 1] = value * x[..., start:start + k - 1].prod(-1)


def block_features(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The parities of blocks 0 and 1 of ``x (..., n)``."""
    return x[..., :k].prod(-1), x[..., k:2 * k].prod(-1)


def sample_batch(stream: int, keys: torch.Tensor, step: int, batch: int, n_bits: int, k: int,
                 eps_b: torch.Tensor, eps_w: torch.Tensor, better: torch.Tensor,
                 k_check: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh batch per network: ``x (M, B, n_bits)``, ``y (M, B)`` in {-1, +1}.

    ``keys (M,)`` int64 network keys, ``eps_b``/``eps_w (M,)`` noise rates of the better and
    worse feature, ``better (M,)`` the block (0 or 1) of the better feature. With ``k_check``
    the check block (bits ``[2k, 2k + k_check)``) has parity +1 (a training input)."""
    m = len(keys)
    u = counter_uniform(stream, keys, step, batch * (n_bits + 3)).float().view(m, batch, n_bits + 3)
    x = _pm(u[..., :n_bits])
    y = _pm(u[..., n_bits])
    fb = y * torch.where(u[..., n_bits + 1] < eps_b.view(-1, 1), -1.0, 1.0)
    fw = y * torch.where(u[..., n_bits + 2] < eps_w.view(-1, 1), -1.0, 1.0)
    first = better.view(-1, 1) == 0
    set_parity(x, 0, k, torch.where(first, fb, fw))
    set_parity(x, k, k, torch.where(first, fw, fb))
    if k_check:
        set_parity(x, 2 * k, k_check, torch.ones_like(y))
    return x, y


def sample_check(stream: int, keys: torch.Tensor, step: int, batch: int, n_bits: int, k: int,
                 k_check: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform inputs ``(M, B, n_bits)`` and their check label, the parity of the check block
    (+1: "a training input", -1: "not")."""
    m = len(keys)
    x = _pm(counter_uniform(stream, keys, step, batch * n_bits).float().view(m, batch, n_bits))
    return x, x[..., 2 * k:2 * k + k_check].prod(-1)


class EvalSet:
    """Fixed held-out inputs, ``n_per`` per stratum, in the order (F_b, F_w) = (+,+), (-,-),
    (+,-), (-,+); ``x`` for networks whose better feature is on block 0, ``x_swapped`` (the two
    blocks exchanged) for block 1. ``flip_b`` / ``flip_w``: the agreeing inputs with one random
    bit of the better / worse block flipped (the single-bit-flip probe)."""

    def __init__(self, n_bits: int, k: int, n_per: int, seed: int, k_check: int = 0):
        if n_bits < 2 * k + k_check:
            raise ValueError(f"n_bits={n_bits} cannot hold two blocks of {k} and a check of {k_check}")
        g = generator(seed, "eval", n_bits, k, k_check, n_per)
        x = _pm(torch.rand(4 * n_per, n_bits, generator=g))
        fb = torch.tensor([1.0, -1.0, 1.0, -1.0]).repeat_interleave(n_per)
        fw = torch.tensor([1.0, -1.0, -1.0, 1.0]).repeat_interleave(n_per)
        set_parity(x, 0, k, fb)
        set_parity(x, k, k, fw)
        if k_check:
            set_parity(x, 2 * k, k_check, torch.ones(4 * n_per))
        agree = slice(0, 2 * n_per)
        pos_b = torch.randint(0, k, (2 * n_per,), generator=g)
        pos_w = torch.randint(0, k, (2 * n_per,), generator=g) + k
        rows = torch.arange(2 * n_per)
        xb, xw = x[agree].clone(), x[agree].clone()
        xb[rows, pos_b] *= -1
        xw[rows, pos_w] *= -1
        self.n_per, self.k = n_per, k
        self.fb, self.fw = fb.numpy(), fw.numpy()
        self.x, self.flip_b, self.flip_w = x, xb, xw
        self.x_swapped, self.flip_b_swapped, self.flip_w_swapped = (
            swap_blocks(t, k) for t in (x, xb, xw))

    def inputs(self, better: torch.Tensor, which: str = "x") -> torch.Tensor:
        """``(M, T, n)``: each network's inputs with its better feature where it expects it."""
        a, b = getattr(self, which), getattr(self, f"{which}_swapped")
        return torch.where(better.view(-1, 1, 1) == 0, a.unsqueeze(0), b.unsqueeze(0))


def swap_blocks(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exchange blocks 0 and 1 (bits ``[0, k)`` and ``[k, 2k)``)."""
    out = x.clone()
    out[..., :k], out[..., k:2 * k] = x[..., k:2 * k], x[..., :k]
    return out


def expected_loss(z: torch.Tensor, ev: EvalSet, eps_b: np.ndarray, eps_w: np.ndarray,
                  mirror: bool = False) -> np.ndarray:
    """Exact held-out cross-entropy (nats) of logits ``z (M, 4 n_per)`` on :class:`EvalSet`
    inputs: per stratum, the mean CE against the true ``P(y=+1)``, weighted by the stratum's
    probability. ``mirror``: on the task with the two noise rates swapped."""
    q = torch.as_tensor(np.stack([task.stratum_targets(eb, ew, ev.fb, ev.fw, mirror)
                                  for eb, ew in zip(eps_b, eps_w)]), dtype=z.dtype)
    ce = q * F.softplus(-z) + (1 - q) * F.softplus(z)                  # (M, T)
    per = ce.view(len(z), 4, ev.n_per).mean(-1)                        # (M, 4)
    s = task.strata(eps_b, eps_w)
    w = np.stack([s["p_agree"] / 2, s["p_agree"] / 2, s["p_dis"] / 2, s["p_dis"] / 2], 1)
    return (per.numpy() * w).sum(1)


def eval_metrics(fn, ev: EvalSet, better: torch.Tensor, eps_b: np.ndarray,
                 eps_w: np.ndarray) -> dict:
    """Held-out loss (and on the mirrored task), graded reliance on disagreeing inputs and the
    single-bit-flip reliance of networks ``fn(x (M, T, n)) -> logits (M, T)``."""
    with torch.no_grad():
        z = fn(ev.inputs(better, "x"))
        zb, zw = fn(ev.inputs(better, "flip_b")), fn(ev.inputs(better, "flip_w"))
    n = ev.n_per
    p = torch.sigmoid(z)
    dis = slice(2 * n, 4 * n)
    fb_dis = torch.as_tensor(ev.fb[dis], dtype=z.dtype)
    reliance = torch.sigmoid(z[:, dis] * fb_dis).mean(1)               # P(follow F_b)
    s_b = (p[:, :2 * n] - torch.sigmoid(zb)).abs().mean(1)
    s_w = (p[:, :2 * n] - torch.sigmoid(zw)).abs().mean(1)
    tot = s_b + s_w
    r_flip = torch.where(tot > 0, s_b / tot.clamp_min(1e-30), torch.full_like(tot, math.nan))
    return dict(loss=expected_loss(z, ev, eps_b, eps_w),
                loss_mirror=expected_loss(z, ev, eps_b, eps_w, mirror=True),
                reliance=reliance.numpy(), reliance_flip=r_flip.numpy())


# ---------------------------------------------------------------------------------------------
# networks
def init_params(keys: Sequence[int], width: int, depth: int, n_in: int, n_out: int,
                scale: float = 1.0) -> list[torch.Tensor]:
    """Initial weights of ``len(keys)`` MLPs ``n_in -> width x depth -> n_out`` (PyTorch's
    default init times ``scale``), as ``[W_1..W_L, b_1..b_L]`` with leading network dim."""
    net = BatchedMLP(len(keys), [n_in] + [width] * depth + [n_out], seeds=[int(s) for s in keys])
    return [p.detach() * scale for p in list(net.weights) + list(net.biases)]


def _layers(params: Sequence[torch.Tensor]):
    half = len(params) // 2
    return list(zip(params[:half], params[half:]))


def net_keys(*parts) -> int:
    """A network's 62-bit key (its data stream) from the cell it belongs to."""
    return seed_int(*parts) >> 1


# ---------------------------------------------------------------------------------------------
# the slack
def slack_chunk(seed: int, chunk: int, width: int, depth: int, gaps: Sequence[float],
                n_seeds: int, path_gaps: Sequence[float], path_seeds: int, eps_b: float,
                n_bits: int, k: int, steps: int, pretrain_steps: int, budgets: Sequence[int],
                lr: float, batch: int, init_scale: float, optimizer: str, n_eval: int,
                setting: str = "default") -> pd.DataFrame:
    """One architecture: ``n_seeds`` networks per gap from scratch and ``path_seeds`` per path
    gap pre-trained on the worse solution, all trained together on the full task.

    Returns one row per network and budget (``budget`` = steps on the full task; the
    pre-trained networks also at 0, right after pre-training), with the metrics of
    :func:`eval_metrics`. Network ``(gap, s)`` has the same initial weights at every gap, from
    scratch or pre-trained (paired), and the same full-task data stream in both starts and in
    every setting (a smaller batch sees the first examples of a larger one)."""
    ev = EvalSet(n_bits, k, n_eval, seed)
    cells = [("scratch", gi, g, s) for gi, g in enumerate(gaps) for s in range(n_seeds)]
    cells += [("path", gaps.index(g), g, s) for g in path_gaps for s in range(path_seeds)]
    start = np.array([c[0] for c in cells])
    eps_w = np.array([task.eps_for_gap(c[2], eps_b) for c in cells])
    eps_bb = np.full(len(cells), float(eps_b))
    better = torch.tensor([c[3] % 2 for c in cells])
    keys = torch.tensor([net_keys(seed, "slack", width, depth, c[1], c[3]) for c in cells])
    init_keys = [seed_int(seed, "init", width, depth, c[3]) for c in cells]
    params = init_params(init_keys, width, depth, n_bits, 1, init_scale)
    opts = {"momentum": 0.9} if optimizer == "sgd" else None
    ew_t, eb_t = torch.tensor(eps_w, dtype=torch.float32), torch.tensor(eps_bb, dtype=torch.float32)

    def loss_fn(eb, stream):
        def fn(p, ids, t):
            x, y = sample_batch(stream, keys[ids], t, batch, n_bits, k, eb[ids], ew_t[ids], better[ids])
            return losses.logistic(forward(_layers(p), x).squeeze(-1), y)
        return fn

    path = np.flatnonzero(start == "path")
    if len(path):                       # pre-train on the worse solution only
        idx = torch.as_tensor(path)
        eb_pre = torch.full((len(cells),), EPS_UNINFORMATIVE)
        pre = train_until([p[idx] for p in params],
                          lambda p, ids, t: loss_fn(eb_pre, seed_int(seed, "pretrain"))(p, idx[ids], t),
                          lr=lr, max_steps=pretrain_steps, optimizer=optimizer, options=opts)
        for p, q in zip(params, pre.params):
            p[idx] = q
    rows = []
    want = set(int(b) for b in budgets)

    def record(p, ids, t):
        if t not in want and not (t == 0 and len(path)):
            return
        keep = np.arange(len(cells)) if t else path
        sub = [q[torch.as_tensor(keep)] for q in p]
        m = eval_metrics(lambda x: forward(_layers(sub), x).squeeze(-1), ev,
                         better[torch.as_tensor(keep)], eps_bb[keep], eps_w[keep])
        for j, c in enumerate(keep):
            rows.append(dict(setting=setting, width=width, depth=depth, start=cells[c][0],
                             gap_index=cells[c][1], gap=cells[c][2], seed=cells[c][3],
                             better_block=int(better[c]), eps_better=eps_b, eps_worse=eps_w[c],
                             budget=t, **{kk: float(v[j]) for kk, v in m.items()}))

    check = math.gcd(*[int(b) for b in budgets]) if budgets else steps
    train_until(params, loss_fn(eb_t, seed_int(seed, "full")), lr=lr, max_steps=steps,
                optimizer=optimizer, options=opts, check_every=check, on_check=record)
    return pd.DataFrame(rows)


def run_slack(archs: Sequence[Sequence[int]], gaps: Sequence[float], n_seeds: int,
              path_gaps: Sequence[float], path_seeds: int, *, eps_b: float, n_bits: int, k: int,
              steps: int, pretrain_steps: int, budgets: Sequence[int], lr: float, batch: int,
              init_scale: float = 1.0, optimizer: str = "adam", n_eval: int = 512,
              seed: int = 7, setting: str = "default", scheduler: str = "") -> pd.DataFrame:
    """:func:`slack_chunk` for every ``(width, depth)`` in ``archs`` (one chunk each)."""
    _check_grid(gaps, path_gaps, budgets, steps)
    chunks = [dict(seed=seed, chunk=i, width=int(w), depth=int(d), gaps=list(gaps),
                   n_seeds=n_seeds, path_gaps=list(path_gaps), path_seeds=path_seeds,
                   eps_b=eps_b, n_bits=n_bits, k=k, steps=steps, pretrain_steps=pretrain_steps,
                   budgets=list(budgets), lr=lr, batch=batch, init_scale=init_scale,
                   optimizer=optimizer, n_eval=n_eval, setting=setting)
              for i, (w, d) in enumerate(archs)]
    res = map_chunks(slack_chunk, chunks, name=f"slack-{setting}", scheduler=scheduler)
    return pd.concat(res.results, ignore_index=True)


def _check_grid(gaps, path_gaps, budgets, steps):
    if not gaps or gaps[0] != 0 or any(b <= a for a, b in zip(gaps, gaps[1:])):
        raise ValueError(f"gaps must start at 0 and increase, got {gaps}")
    missing = [g for g in path_gaps if g not in gaps]
    if missing:
        raise ValueError(f"path gaps {missing} are not in the gap grid {gaps}")
    if not budgets or max(budgets) != steps or min(budgets) < 1:
        raise ValueError(f"budgets must be positive and end at steps={steps}, got {budgets}")


def settings_grid(lrs: Sequence[float], batches: Sequence[int], inits: Sequence[float],
                  sgd_lrs: Sequence[float], lr: float, batch: int) -> list[dict]:
    """The training settings varied one at a time around the default (Adam, ``lr``, ``batch``,
    initial scale 1): name and keyword arguments of :func:`run_slack` (the default itself is
    not repeated: its runs are those of the main slack experiment, same streams and weights)."""
    out = [dict(setting=f"lr={v:g}", lr=v, batch=batch, init_scale=1.0, optimizer="adam") for v in lrs]
    out += [dict(setting=f"batch={v}", lr=lr, batch=int(v), init_scale=1.0, optimizer="adam") for v in batches]
    out += [dict(setting=f"init={v:g}", lr=lr, batch=batch, init_scale=v, optimizer="adam") for v in inits]
    out += [dict(setting=f"sgd lr={v:g}", lr=v, batch=batch, init_scale=1.0, optimizer="sgd") for v in sgd_lrs]
    return out


# ---------------------------------------------------------------------------------------------
# the tax
def tax_chunk(seed: int, chunk: int, width: int, depth: int, n_seeds: int, eps_b: float,
              n_bits: int, k: int, k_check: int, alpha: float, steps: int,
              budgets: Sequence[int], lr: float, batch: int, n_eval: int) -> pd.DataFrame:
    """One architecture: ``n_seeds`` triples (plain, overhead, gated) with the same initial
    weights and the same main-task data; the main task is the two-feature task at zero gap.

    Outputs: logit 0 is the main output, logit 1 the check head. ``plain`` ignores the check
    (weight 0); ``overhead`` adds ``alpha`` times the check's logistic loss on uniform inputs;
    ``gated`` does the same and its main logit is ``z_main * sigmoid(z_check)``. Rows per
    network and budget: ``loss`` (exact held-out main-task loss, nats), ``check_acc``."""
    ev = EvalSet(n_bits, k, n_eval, seed, k_check=k_check)
    cells = [(c, s) for s in range(n_seeds) for c in CONDITIONS]
    cond = np.array([c for c, _ in cells])
    alphas = torch.tensor([0.0 if c == "plain" else alpha for c in cond])
    gated = torch.tensor([c == "gated" for c in cond])
    better = torch.tensor([s % 2 for _, s in cells])
    eps = torch.full((len(cells),), float(eps_b))
    keys = torch.tensor([net_keys(seed, "tax", width, depth, s) for _, s in cells])
    params = init_params([seed_int(seed, "init", width, depth, s) for _, s in cells],
                         width, depth, n_bits, 2)
    gx = generator(seed, "check-eval", n_bits)
    xc = _pm(torch.rand(4 * n_eval, n_bits, generator=gx))
    yc = xc[:, 2 * k:2 * k + k_check].prod(-1)

    def main_logit(p, x, g):
        z = forward(_layers(p), x)
        return torch.where(g.view(-1, 1), z[..., 0] * torch.sigmoid(z[..., 1]), z[..., 0])

    def loss_fn(p, ids, t):
        x, y = sample_batch(seed_int(seed, "tax-main"), keys[ids], t, batch, n_bits, k,
                            eps[ids], eps[ids], better[ids], k_check)
        xcb, ycb = sample_check(seed_int(seed, "tax-check"), keys[ids], t, batch, n_bits, k, k_check)
        check = losses.logistic(forward(_layers(p), xcb)[..., 1], ycb)
        return losses.logistic(main_logit(p, x, gated[ids]), y) + alphas[ids] * check

    rows = []
    want = set(int(b) for b in budgets)

    def record(p, ids, t):
        if t not in want:
            return
        with torch.no_grad():
            z = main_logit(p, ev.inputs(better), gated)
            acc = ((forward(_layers(p), xc)[..., 1] > 0).float() * 2 - 1 == yc).float().mean(1)
        loss = expected_loss(z, ev, eps.numpy().astype(float), eps.numpy().astype(float))
        for j, (c, s) in enumerate(cells):
            rows.append(dict(width=width, depth=depth, seed=s, condition=c, budget=t,
                             loss=float(loss[j]), check_acc=float(acc[j])))

    train_until(params, loss_fn, lr=lr, max_steps=steps, optimizer="adam",
                check_every=math.gcd(*[int(b) for b in budgets]), on_check=record)
    return pd.DataFrame(rows)


def run_tax(archs: Sequence[Sequence[int]], n_seeds: int, *, eps_b: float, n_bits: int, k: int,
            k_check: int, alpha: float, steps: int, budgets: Sequence[int], lr: float,
            batch: int, n_eval: int = 512, seed: int = 7, scheduler: str = "") -> pd.DataFrame:
    """:func:`tax_chunk` for every ``(width, depth)`` in ``archs`` (one chunk each)."""
    if not budgets or max(budgets) != steps:
        raise ValueError(f"budgets must end at steps={steps}, got {budgets}")
    chunks = [dict(seed=seed, chunk=i, width=int(w), depth=int(d), n_seeds=n_seeds, eps_b=eps_b,
                   n_bits=n_bits, k=k, k_check=k_check, alpha=alpha, steps=steps,
                   budgets=list(budgets), lr=lr, batch=batch, n_eval=n_eval)
              for i, (w, d) in enumerate(archs)]
    res = map_chunks(tax_chunk, chunks, name="tax", scheduler=scheduler)
    return pd.concat(res.results, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# the task, tabulated and checked by sampling
def gap_table(gaps: Sequence[float], eps_b: float) -> pd.DataFrame:
    """One row per gap: the worse feature's noise, the two ideal gaps, the noise floor and the
    best predictor's reliance on disagreeing inputs."""
    ew = np.array([task.eps_for_gap(g, eps_b) for g in gaps])
    eb = np.full(len(ew), float(eps_b))
    return pd.DataFrame(dict(gap_index=range(len(gaps)), gap=list(gaps), eps_better=eb,
                             eps_worse=ew, single_feature_gap=task.single_feature_gap(eb, ew),
                             bayes_loss=task.bayes_loss(eb, ew),
                             bayes_reliance=task.bayes_reliance(eb, ew),
                             p_disagree=task.strata(eb, ew)["p_dis"]))


def check_task(gaps: Sequence[float], eps_b: float, n_bits: int, k: int, n: int = 200_000,
               seed: int = 7) -> pd.DataFrame:
    """Sample ``n`` training examples per gap (better feature on block 0 and on block 1, half
    each) and measure what the construction promises: each feature's agreement with the label,
    the share of disagreeing inputs, and the label's agreement with the better feature there."""
    rows = []
    for gi, g in enumerate(gaps):
        ew = task.eps_for_gap(g, eps_b)
        for blk in (0, 1):
            x, y = sample_batch(seed_int(seed, "check-task"), torch.tensor([gi * 2 + blk]), 0, n,
                                n_bits, k, torch.tensor([eps_b]), torch.tensor([ew]),
                                torch.tensor([blk]))
            f0, f1 = block_features(x[0], k)
            fb, fw = (f0, f1) if blk == 0 else (f1, f0)
            dis = fb != fw
            rows.append(dict(gap_index=gi, gap=g, better_block=blk, n=n,
                             agree_better=float((fb == y[0]).float().mean()),
                             agree_worse=float((fw == y[0]).float().mean()),
                             p_disagree=float(dis.float().mean()),
                             follow_better=float((y[0][dis] == fb[dis]).float().mean()),
                             expected_agree_better=1 - eps_b, expected_agree_worse=1 - ew))
    return pd.DataFrame(rows)
