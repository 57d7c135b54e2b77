"""Memorise the training specification, or derive it: environments, networks, training and the
route diagnostics of chapter 06.

**Environments.** A task instance (one per seed) draws an order of the ``2^m`` descriptions
``d in {-1, +1}^m``: the first ``K`` are the training environments (nested: the environments of
``K = 8`` include those of ``K = 4``), the last ``n_heldout`` are held-out environments that no
network sees in training. The grader of environment ``e`` wants the ``s``-bit specification
``r_e = F_k(d_e)``: bit ``j`` is the product (parity) of ``k`` fixed description bits ``S_j``,
drawn once per seed and order. ``k`` is the difficulty of the derivation (``k = 1`` copies bits).

**Inputs.** Each environment shows its identifier (one-hot over the ``K`` training
environments, times ``id_scale``) and its description scaled to unit norm (``d / sqrt(m)``), so
the two inputs have the same norm at ``id_scale = 1``. Held-out environments show no identifier
(a zero identifier: one no network has seen).

**Networks.** One hidden ReLU layer of width ``W`` and ``s`` linear outputs, trained on the mean
squared error to the targets ``r_e in {-1, +1}^s``. The first layer is stored as two blocks,
``wid (M, K, W)`` for the identifier and ``wd (M, m, W)`` for the description: a one-hot input
reads row ``e`` of ``wid``, which is what a dense layer would compute, ``K`` times cheaper. The
layer after it is :func:`countingargs.nets.mlp.forward`. ``M`` networks train as one batch with
:func:`countingargs.nets.train.train_until`.

**Conditions.** ``free`` networks see both inputs; ``memorise`` networks have the description
masked (they can only look up the identifier); ``derive`` networks have the identifier masked
(they can only compute from the description, or use it as a lookup key). The three conditions
of a seed start from the same initial weights, and so do the three difficulties.

**Diagnostics** (:func:`diagnose`): the training loss and the loss and accuracy after
scrambling (a derangement of the training environments) or zeroing each input; the share of
output bits that follow the description when the identifier points to another environment
(``follow_desc``: 0 for a pure memoriser, 1 for a pure deriver); the accuracy on held-out
environments without an identifier (chance 1/2). Predictions are ``+1`` where the output is
``>= 0``, else ``-1``.

**Chunks.** :func:`run_arm` runs its grid as chunks of :func:`countingargs.chunks.map_chunks`
(:func:`arm_chunk`: one ``K`` and a group of seeds, trained as one batch), in process or on a
Dask cluster (``scheduler``, or ``COUNTINGARGS_SCHEDULER``). A network's streams depend only on
its task instance, seed and ``K``, so the tables are byte-identical whatever the grouping and
the number of workers; the LLC's Langevin noise is one stream per ``K``, so an arm with LLC keeps
each ``K`` in one chunk.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from ...chunks import map_chunks
from ...estimators import llc as llc_est
from ...estimators.volume import local_volume_batch
from ...nets import seeding
from ...nets.mlp import forward as mlp_forward
from ...nets.train import train_until

CONDITIONS = ("free", "memorise", "derive")
KEYS = ("wid", "wd", "b0", "w1", "b1")
BASE = "ch06"


# ---------------------------------------------------------------------------------------------
# the task
def descriptions(seed: int, m: int) -> np.ndarray:
    """All ``2^m`` descriptions in {-1, +1}^m, in the order of task instance ``seed``
    (``(2^m, m)`` float; bit ``i`` of the code is coordinate ``i``)."""
    if not 1 <= m <= 16:
        raise ValueError(f"m (description bits) must be in 1..16, got {m}")
    order = seeding.rng(BASE, "descriptions", m, seed).permutation(2 ** m)
    return (((order[:, None] >> np.arange(m)) & 1) * 2 - 1).astype(np.float64)


def rule(seed: int, k: int, m: int, s: int) -> np.ndarray:
    """The derivation of task instance ``seed`` at difficulty ``k``: ``(s, k)`` description bit
    indices; specification bit ``j`` is the product of description bits ``rule[j]``."""
    if not 1 <= k <= m:
        raise ValueError(f"k (bits per specification bit) must be in 1..{m}, got {k}")
    if s < 1:
        raise ValueError(f"s (specification bits) must be >= 1, got {s}")
    g = seeding.rng(BASE, "rule", m, s, k, seed)
    return np.stack([np.sort(g.choice(m, k, replace=False)) for _ in range(s)])


def specification(codes: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """``r = F(d)``: ``(n, s)`` in {-1, +1}, bit ``j`` the product of ``codes[:, subsets[j]]``."""
    return np.stack([np.prod(codes[:, sub], axis=1) for sub in subsets], axis=1)


def derangement(seed: int, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` without fixed points (one cycle through a random order):
    environment ``e`` is shown the identifier (or description) of environment ``perm[e]``."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = seeding.rng(BASE, "scramble", n, seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


@dataclass
class Batch:
    """The data of ``M`` networks (one row per network): training environments, held-out ones,
    the masks of their condition and the scrambles used by the diagnostics."""

    K: int
    m: int
    s: int
    id_scale: float
    desc: torch.Tensor          # (M, K, m), scaled to unit norm
    y: torch.Tensor             # (M, K, s) in {-1, +1}
    desc_held: torch.Tensor     # (M, H, m)
    y_held: torch.Tensor        # (M, H, s)
    use_id: torch.Tensor        # (M,) 1.0 or 0.0
    use_desc: torch.Tensor      # (M,)
    perm: torch.Tensor          # (M, K) derangement of the training environments
    held_rows: torch.Tensor     # (M, H) a training identifier shown with each held-out description
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)   # K, k, seed, condition per row

    @property
    def n(self) -> int:
        return self.desc.shape[0]

    def select(self, ids) -> "Batch":
        ids = torch.as_tensor(ids, dtype=torch.long)
        pick = {name: getattr(self, name)[ids] for name in
                ("desc", "y", "desc_held", "y_held", "use_id", "use_desc", "perm", "held_rows")}
        return Batch(self.K, self.m, self.s, self.id_scale, meta=self.meta.iloc[ids.numpy()]
                     .reset_index(drop=True), **pick)


def make_batch(K: int, ks, seeds, conditions=CONDITIONS, *, m: int = 10, s: int = 4,
               n_heldout: int = 128, id_scale: float = 1.0) -> Batch:
    """The networks of one cell of the grid: every ``k x seed x condition`` (in that order)."""
    if K < 2:
        raise ValueError(f"K (training environments) must be >= 2, got {K}")
    if K + n_heldout > 2 ** m:
        raise ValueError(f"K + n_heldout = {K + n_heldout} exceeds the 2^{m} = {2 ** m} descriptions")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown conditions {bad}; valid: {CONDITIONS}")
    if not id_scale > 0:
        raise ValueError(f"id_scale must be > 0, got {id_scale}")
    rows, parts = [], {name: [] for name in ("desc", "y", "desc_held", "y_held", "use_id",
                                             "use_desc", "perm", "held_rows")}
    scale = 1.0 / math.sqrt(m)
    for k in ks:
        for seed in seeds:
            codes = descriptions(seed, m)
            r = specification(codes, rule(seed, k, m, s))
            train, held = slice(0, K), slice(2 ** m - n_heldout, 2 ** m)
            perm = derangement(seed, K)
            held_rows = seeding.rng(BASE, "held-rows", K, n_heldout, seed).integers(0, K, n_heldout)
            for cond in conditions:
                parts["desc"].append(codes[train] * scale)
                parts["y"].append(r[train])
                parts["desc_held"].append(codes[held] * scale)
                parts["y_held"].append(r[held])
                parts["use_id"].append(float(cond != "derive"))
                parts["use_desc"].append(float(cond != "memorise"))
                parts["perm"].append(perm)
                parts["held_rows"].append(held_rows)
                rows.append({"K": K, "k": int(k), "seed": int(seed), "condition": cond})
    t = {name: torch.as_tensor(np.stack(v) if isinstance(v[0], np.ndarray) else np.array(v))
         for name, v in parts.items()}
    floats = {name: t[name].float() for name in ("desc", "y", "desc_held", "y_held", "use_id", "use_desc")}
    return Batch(K, m, s, float(id_scale), perm=t["perm"].long(), held_rows=t["held_rows"].long(),
                 meta=pd.DataFrame(rows), **floats)


# ---------------------------------------------------------------------------------------------
# the networks
def init_params(batch: Batch, width: int) -> dict[str, torch.Tensor]:
    """Initial weights of the batch's networks. Network ``(K, seed)`` draws its weights from its
    own generator (so every condition and difficulty of a seed starts from the same weights, and
    the shared weights are the same for every ``K``): ``wd, wid ~ N(0, 1/2)`` per weight (the
    pre-activation has variance ``(id_scale^2 + 1) / 2``, whatever ``K``), ``b0 = 0``,
    ``w1 ~ N(0, 1/W)``, ``b1 = 0``."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    out = {name: [] for name in KEYS}
    K, m, s = batch.K, batch.m, batch.s
    for seed in batch.meta.seed:
        g = seeding.generator(BASE, "init", width, int(seed))
        out["wd"].append(torch.randn(m, width, generator=g) / math.sqrt(2))
        out["w1"].append(torch.randn(width, s, generator=g) / math.sqrt(width))
        g_id = seeding.generator(BASE, "init-id", width, K, int(seed))
        out["wid"].append(torch.randn(K, width, generator=g_id) / math.sqrt(2))
        out["b0"].append(torch.zeros(1, width))
        out["b1"].append(torch.zeros(1, s))
    return {name: torch.stack(v) for name, v in out.items()}


def forward(p: dict, desc: torch.Tensor | None, rows: torch.Tensor | None, *,
            use_id: torch.Tensor | None = None, use_desc: torch.Tensor | None = None,
            id_scale: float = 1.0) -> torch.Tensor:
    """Outputs ``(M, B, s)``. ``desc (M, B, m)`` or None (no description); ``rows``: the
    identifier of each example as an index into the training environments, ``(B,)`` shared or
    ``(M, B)`` per network, or None (no identifier). ``use_id`` / ``use_desc`` ``(M,)`` mask
    an input per network (the restricted conditions)."""
    pre = p["b0"]
    if desc is not None:
        h = torch.bmm(desc, p["wd"])
        pre = pre + (h if use_desc is None else h * use_desc.view(-1, 1, 1))
    if rows is not None:
        wid = p["wid"]
        if rows.dim() == 1:
            e = wid[:, rows]
        else:
            e = torch.gather(wid, 1, rows.unsqueeze(-1).expand(-1, -1, wid.shape[-1]))
        e = e * id_scale
        pre = pre + (e if use_id is None else e * use_id.view(-1, 1, 1))
    return mlp_forward([(p["w1"], p["b1"])], torch.relu(pre))


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Half the mean squared error per network, ``(M,)``."""
    return 0.5 * ((out - y) ** 2).mean(dim=(1, 2))


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of output bits whose sign (``>= 0`` counts as ``+1``) is the target's, ``(M,)``."""
    pred = torch.where(out >= 0, 1.0, -1.0)
    return (pred == y).float().mean(dim=(1, 2))


def train_loss(p: dict, b: Batch) -> torch.Tensor:
    """Task loss of every network on its own training environments, ``(M,)``."""
    rows = torch.arange(b.K)
    return mse(forward(p, b.desc, rows, use_id=b.use_id, use_desc=b.use_desc,
                       id_scale=b.id_scale), b.y)


def live(p: dict, b: Batch) -> list[torch.Tensor]:
    """The parameters a network can use: its masked input block is left out."""
    return [p["wid"] * b.use_id.view(-1, 1, 1), p["wd"] * b.use_desc.view(-1, 1, 1),
            p["b0"], p["w1"], p["b1"]]


def sq_norm(tensors) -> torch.Tensor:
    return sum((t ** 2).flatten(1).sum(1) for t in tensors)


# ---------------------------------------------------------------------------------------------
# training
@dataclass(frozen=True)
class Arm:
    """A training regime. ``decay``: ``"coupled"`` adds ``weight_decay / 2 * |live params|^2``
    to the loss (L2 regularisation, the form SGD's ``weight_decay`` option implements);
    ``"decoupled"`` is AdamW's. ``freeze``: stop each network when its training loss first
    reaches ``target`` (checked every step); otherwise train ``max_steps`` steps."""

    name: str
    optimizer: str = "sgd"
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay: str = "coupled"
    freeze: bool = True
    max_steps: int = 6000
    width: int = 64
    id_scale: float = 1.0
    target: float = 1e-3
    level_alt: float = 0.0     # also keep each network as it first reached this (higher) loss

    def __post_init__(self):
        if self.decay not in ("coupled", "decoupled"):
            raise ValueError(f"decay must be 'coupled' or 'decoupled', got {self.decay!r}")
        if self.decay == "decoupled" and self.optimizer != "adamw" and self.weight_decay:
            raise ValueError("decoupled weight decay needs optimizer='adamw'")
        if self.optimizer == "adamw" and self.decay != "decoupled":
            raise ValueError("optimizer 'adamw' is decoupled weight decay; use 'adam' for coupled L2")
        if self.freeze and not self.target > 0:
            raise ValueError(f"a frozen arm needs a target loss > 0, got {self.target}")
        if self.level_alt and not self.level_alt > self.target:
            raise ValueError(f"level_alt ({self.level_alt}) must lie above the target ({self.target})")


@dataclass
class Trained:
    batch: Batch
    init: dict
    params: dict
    reached: np.ndarray
    steps: np.ndarray
    alt_params: dict | None = None
    alt_steps: np.ndarray | None = None


def train(b: Batch, arm: Arm) -> Trained:
    """Train the batch's networks under ``arm``."""
    p0 = init_params(b, arm.width)
    lam = arm.weight_decay if arm.decay == "coupled" else 0.0
    rows = torch.arange(b.K)

    def task(p, ids):
        full = len(ids) == b.n
        pick = (lambda x: x) if full else (lambda x: x[ids])
        use_id, use_desc = pick(b.use_id), pick(b.use_desc)
        out = forward(p, pick(b.desc), rows, use_id=use_id, use_desc=use_desc, id_scale=b.id_scale)
        return mse(out, pick(b.y)), use_id, use_desc

    def loss_fn(pl, ids, step):
        p = dict(zip(KEYS, pl))
        loss, use_id, use_desc = task(p, ids)
        if lam:
            loss = loss + 0.5 * lam * sq_norm([p["wid"] * use_id.view(-1, 1, 1),
                                               p["wd"] * use_desc.view(-1, 1, 1),
                                               p["b0"], p["w1"], p["b1"]])
        return loss

    alt = {name: v.clone() for name, v in p0.items()} if arm.level_alt else None
    alt_steps = np.full(b.n, -1, dtype=np.int64)

    def reached(pl, ids, step):
        p = dict(zip(KEYS, pl))
        loss = task(p, ids)[0]
        if alt is not None:
            new = (loss <= arm.level_alt) & torch.as_tensor(alt_steps[ids.numpy()] < 0)
            if new.any():
                for name in KEYS:
                    alt[name][ids[new]] = p[name][new]
                alt_steps[ids[new].numpy()] = step
        return loss <= arm.target if arm.freeze else torch.zeros_like(loss, dtype=torch.bool)

    options = {}
    if arm.optimizer == "sgd":
        options["momentum"] = arm.momentum
    if arm.decay == "decoupled":
        options["weight_decay"] = arm.weight_decay
    res = train_until([p0[n] for n in KEYS], loss_fn, lr=arm.lr, max_steps=arm.max_steps,
                      reached=reached if (arm.freeze or alt is not None) else None,
                      optimizer=arm.optimizer, check_every=1, options=options)
    params = dict(zip(KEYS, res.params))
    steps, ok = res.steps.copy(), res.reached.copy()
    if not arm.freeze:            # trained for the full budget: "reached" is the final loss
        with torch.no_grad():
            ok = (train_loss(params, b) <= arm.target).numpy()
        steps = np.full(b.n, arm.max_steps)
    return Trained(b, p0, params, ok, steps, alt, alt_steps if alt is not None else None)


# ---------------------------------------------------------------------------------------------
# diagnostics
def diagnose(b: Batch, p: dict) -> pd.DataFrame:
    """Route diagnostics of every network of the batch (one row each, in batch order)."""
    rows = torch.arange(b.K)
    kw = dict(use_id=b.use_id, use_desc=b.use_desc, id_scale=b.id_scale)
    with torch.no_grad():
        out = forward(p, b.desc, rows, **kw)
        scr_id = forward(p, b.desc, b.perm, **kw)               # identifier of perm[e]
        desc_perm = torch.gather(b.desc, 1, b.perm.unsqueeze(-1).expand(-1, -1, b.m))
        scr_desc = forward(p, desc_perm, rows, **kw)             # description of perm[e]
        zero_id = forward(p, b.desc, None, **kw)
        zero_desc = forward(p, None, rows, **kw)
        held = forward(p, b.desc_held, None, **kw)
        held_conf = forward(p, b.desc_held, b.held_rows, **kw)
        y_id = torch.gather(b.y, 1, b.perm.unsqueeze(-1).expand(-1, -1, b.s))
        y_held_id = torch.gather(b.y, 1, b.held_rows.unsqueeze(-1).expand(-1, -1, b.s))
        res = {"loss": mse(out, b.y), "acc": accuracy(out, b.y),
               "loss_scramble_id": mse(scr_id, b.y), "acc_scramble_id": accuracy(scr_id, b.y),
               "loss_scramble_desc": mse(scr_desc, b.y), "acc_scramble_desc": accuracy(scr_desc, b.y),
               "loss_zero_id": mse(zero_id, b.y), "acc_zero_id": accuracy(zero_id, b.y),
               "loss_zero_desc": mse(zero_desc, b.y), "acc_zero_desc": accuracy(zero_desc, b.y),
               "follow_desc": follow_share(scr_id, b.y, y_id),
               "heldout_acc": accuracy(held, b.y_held),
               "heldout_follow_desc": follow_share(held_conf, b.y_held, y_held_id)}
    df = b.meta.copy()
    for name, v in res.items():
        df[name] = v.double().numpy()
    return df


def follow_share(out: torch.Tensor, y_desc: torch.Tensor, y_id: torch.Tensor) -> torch.Tensor:
    """Among output bits where the description's target and the identifier's target differ,
    the share whose prediction is the description's, ``(M,)`` (NaN if no bit differs)."""
    pred = torch.where(out >= 0, 1.0, -1.0)
    differ = y_desc != y_id
    n = differ.float().sum(dim=(1, 2))
    hit = ((pred == y_desc) & differ).float().sum(dim=(1, 2))
    return torch.where(n > 0, hit / n.clamp(min=1), torch.full_like(n, float("nan")))


def describe(t: Trained, which: str = "final") -> pd.DataFrame:
    """Diagnostics plus the matching-loss bookkeeping and the cheap complexity measures
    (distance from the initial weights and squared norm, both over the live parameters)."""
    p = t.params if which == "final" else t.alt_params
    b = t.batch
    df = diagnose(b, p)
    with torch.no_grad():
        dist = sq_norm([a - c for a, c in zip(live(p, b), live(t.init, b))]).sqrt()
        nrm = sq_norm(live(p, b))
    df["dist_init"] = dist.double().numpy()
    df["norm_sq"] = nrm.double().numpy()
    if which == "final":
        df["reached"] = t.reached.astype(bool)
        df["steps"] = t.steps.astype(np.int64)
    else:
        df["reached"] = t.alt_steps >= 0
        df["steps"] = t.alt_steps.astype(np.int64)
    return df


# ---------------------------------------------------------------------------------------------
# complexity estimators (the shared, validated ones)
def llc_loss_fn(b: Batch):
    """The batched ``loss_fn`` the estimators take: the task loss of point ``i`` on network
    ``i``'s data, for ``theta`` holding ``P * C`` rows (point-major, ``C`` chains per point)."""
    rows = torch.arange(b.K)

    def f(theta):
        c = theta["wid"].shape[0] // b.n
        if c * b.n != theta["wid"].shape[0]:
            raise ValueError(f"expected a multiple of {b.n} points, got {theta['wid'].shape[0]}")
        r = (lambda x: x) if c == 1 else (lambda x: x.repeat_interleave(c, 0))
        out = forward(theta, r(b.desc), rows, use_id=r(b.use_id), use_desc=r(b.use_desc),
                      id_scale=b.id_scale)
        return mse(out, r(b.y))

    return f


def measure_llc(b: Batch, p: dict, *, n_beta: float, step_size: float, localization: float,
                n_chains: int, n_draws: int, n_burnin: int, seed: int) -> pd.DataFrame:
    """The LLC of every network of the batch (:func:`estimators.llc.estimate_llc_batch`,
    settings fixed by the caller and the same for every network). ``drift``: the mean sampled
    loss in the second half of the draws minus the first half (a stationarity check)."""
    res = llc_est.estimate_llc_batch(llc_loss_fn(b), {k: v.detach() for k, v in p.items()},
                                     n=b.K, step_size=step_size, n_beta=n_beta,
                                     localization=localization, n_chains=n_chains,
                                     n_draws=n_draws, n_burnin=n_burnin, seed=seed)
    trace = res["loss_trace"].mean(axis=1)[:, n_burnin:]
    half = trace.shape[1] // 2
    df = b.meta.copy()
    df["llc"] = res["llc_mean"]
    df["llc_chain_sd"] = res["llc_std"]
    df["llc_diverged"] = res["diverged"]
    df["llc_drift"] = trace[:, half:].mean(1) - trace[:, :half].mean(1)
    return df


def n_params(b: Batch, width: int) -> int:
    """Parameters of one network (all blocks, masked ones included)."""
    return b.K * width + b.m * width + width + width * b.s + b.s


def measure_volume(b: Batch, p: dict, *, rhos, tol: float, n_samples: int, seed: int
                   ) -> pd.DataFrame:
    """Local volume (:func:`estimators.volume.local_volume_batch`): the share of random
    directions along which a step of length ``rho * sqrt(D)`` (a root-mean-square change of
    ``rho`` per parameter, ``D`` parameters) keeps the training loss within ``tol`` of its value.
    All networks of a ``K`` have the same ``D`` and see the same directions."""
    width = p["w1"].shape[1]
    d = n_params(b, width)
    radii = np.asarray(rhos, dtype=float) * math.sqrt(d)
    out = []
    for i in range(b.n):
        one = b.select([i])
        pt = {k: v[i:i + 1].detach() for k, v in p.items()}
        res = local_volume_batch(llc_loss_fn(one), pt, radii, tol, n_samples=n_samples, seed=seed)
        for rho, frac in zip(rhos, res["fraction"][0]):
            row = one.meta.iloc[0].to_dict()
            row.update(rho=float(rho), fraction=float(frac))
            out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# the grid, as chunks of countingargs.chunks.map_chunks
#: networks per chunk of an arm without LLC, by default (the seeds of a ``K`` are grouped so that
#: a chunk trains at most this many, at least one seed): the standard grid's 45 networks of a
#: ``K`` stay one batch, the full grid's 144 make 3 chunks. Every network's streams are its own,
#: so any grouping gives the same networks.
NETS_PER_CHUNK = 48


def arm_chunk(seed: int, chunk: int, arm: dict, K: int, ks: list, seeds: list, conditions: list,
              m: int, s: int, n_heldout: int, llc_settings: dict | None = None,
              volume_settings: dict | None = None, llc_alternative: dict | None = None,
              sensitivity: bool = False) -> dict[str, list[pd.DataFrame]]:
    """One chunk of :func:`run_arm`: the networks ``ks x seeds x conditions`` of one ``K``,
    trained as one batch under ``arm`` (the fields of :class:`Arm`), diagnosed and measured.

    ``seed`` and ``chunk`` only name the chunk: every random stream belongs to a network (its
    task instance, initial weights and scrambles come from its ``seed``; the volume's
    directions from ``K``), except the LLC's Langevin noise, one stream per ``K`` drawn for all
    of the chunk's networks at once, so :func:`run_arm` gives a chunk with LLC all seeds of
    its ``K``. Returns lists of frames: ``networks`` (main level, then ``level_alt``),
    ``llc``, ``volume``, ``llc_sensitivity`` (``sensitivity``: the LLC at ``llc_alternative``
    too)."""
    arm = Arm(**arm)
    b = make_batch(K, ks, seeds, conditions, m=m, s=s, n_heldout=n_heldout, id_scale=arm.id_scale)
    t = train(b, arm)
    out = {"networks": [], "llc": [], "volume": [], "llc_sensitivity": []}
    levels = [("main", arm.target, t.params)]
    if arm.level_alt:
        levels.append(("alt", arm.level_alt, t.alt_params))
    for level, value, params in levels:
        df = describe(t, "final" if level == "main" else "alt")
        df.insert(0, "level", level)
        df.insert(1, "level_loss", value)
        out["networks"].append(df)
        if llc_settings is not None:
            lt = measure_llc(b, params, seed=seeding.seed_int(BASE, "llc", K), **llc_settings)
            lt.insert(0, "level", level)
            out["llc"].append(lt)
            if level == "main" and llc_alternative is not None and sensitivity:
                alt = measure_llc(b, params, seed=seeding.seed_int(BASE, "llc-alt", K),
                                  **llc_alternative)
                out["llc_sensitivity"] += [lt.drop(columns="level").assign(setting="main"),
                                           alt.assign(setting="alternative")]
        if volume_settings is not None and level == "main":
            out["volume"].append(measure_volume(b, params, seed=seeding.seed_int(BASE, "volume", K),
                                                **volume_settings))
    return out


def run_arm(arm: Arm, Ks, ks, seeds, conditions=CONDITIONS, *, m: int, s: int, n_heldout: int,
            llc_settings: dict | None = None, volume_settings: dict | None = None,
            llc_alternative: dict | None = None, alternative_Ks=(),
            seeds_per_chunk: int | None = None,
            scheduler: str | None = None) -> dict[str, pd.DataFrame]:
    """Train and diagnose every network of ``arm`` over ``Ks x ks x seeds x conditions``.

    Returns ``networks`` (one row per network: arm settings, diagnostics, distance, norm,
    steps; with ``level_alt`` also a row per network at that level, ``level = "alt"``), and,
    when asked, ``llc`` (per network, at the main level and at ``level_alt``), ``volume``
    (per network and radius) and ``llc_sensitivity`` (main level, ``K`` in ``alternative_Ks``:
    the LLC at the main and at the alternative settings, ``setting`` main / alternative).

    The work runs as chunks (:func:`arm_chunk`, through :func:`countingargs.chunks.map_chunks`
    on ``scheduler``; None reads ``COUNTINGARGS_SCHEDULER``): one per ``K`` and group of
    ``seeds_per_chunk`` seeds (default: :data:`NETS_PER_CHUNK` networks), merged in the order above,
    so the tables are the same whatever the grouping and wherever the chunks ran. With
    ``llc_settings`` a chunk holds all seeds of its ``K`` (the LLC's noise is one stream per
    ``K``; another grouping would draw other numbers). The progress line (on the terminal,
    not in the notebook) names the chunks ``ch06-<arm>``."""
    Ks, ks, seeds = [int(x) for x in Ks], [int(x) for x in ks], [int(x) for x in seeds]
    for name, v in (("Ks", Ks), ("ks", ks), ("seeds", seeds)):
        if not v or len(set(v)) != len(v):
            raise ValueError(f"{name} must be non-empty without repeats, got {v}")
    if llc_settings is not None:
        if seeds_per_chunk is not None and seeds_per_chunk < len(seeds):
            raise ValueError("with llc_settings a chunk holds all seeds of its K (the LLC noise "
                             f"is one stream per K); got seeds_per_chunk={seeds_per_chunk}")
        group = len(seeds)
    else:
        per_seed = len(ks) * len(conditions)
        group = (max(1, NETS_PER_CHUNK // per_seed) if seeds_per_chunk is None
                 else int(seeds_per_chunk))
        if group < 1:
            raise ValueError(f"seeds_per_chunk must be >= 1, got {seeds_per_chunk}")
    groups = [seeds[i:i + group] for i in range(0, len(seeds), group)]
    alternative_Ks = {int(x) for x in alternative_Ks}
    chunks = [dict(seed=seeding.seed_int(BASE, "chunk", arm.name, K, grp[0]), chunk=0, arm=asdict(arm),
                   K=K, ks=ks, seeds=grp, conditions=list(conditions), m=m, s=s,
                   n_heldout=n_heldout, llc_settings=llc_settings, volume_settings=volume_settings,
                   llc_alternative=llc_alternative, sensitivity=K in alternative_Ks)
              for K in Ks for grp in groups]
    for i, c in enumerate(chunks):
        c["chunk"] = i
    res = map_chunks(arm_chunk, chunks, name=f"{BASE}-{arm.name}", scheduler=scheduler)
    order = {(k, sd): i for i, (k, sd) in enumerate((k, sd) for k in ks for sd in seeds)}
    parts = {"networks": [], "llc": [], "volume": [], "llc_sensitivity": []}
    for ki in range(len(Ks)):
        per_k = res.results[ki * len(groups):(ki + 1) * len(groups)]
        for name in parts:
            for j in range(len(per_k[0][name])):     # the same frames in every chunk of a K
                frames = [r[name][j] for r in per_k]
                parts[name].append(frames[0] if len(frames) == 1 else _in_order(frames, order))
    settings = {"arm": arm.name, "optimizer": arm.optimizer, "lr": arm.lr,
                "weight_decay": arm.weight_decay, "decay": arm.decay, "frozen": arm.freeze,
                "max_steps": arm.max_steps, "width": arm.width, "id_scale": arm.id_scale}
    out = {"networks": _with(pd.concat(parts.pop("networks"), ignore_index=True), settings)}
    for name, frames in parts.items():
        if frames:
            out[name] = _with(pd.concat(frames, ignore_index=True), {"arm": arm.name})
    return out


def _in_order(frames: list[pd.DataFrame], order: dict) -> pd.DataFrame:
    """The frames of one ``K``'s seed groups as one frame in :func:`make_batch`'s order
    (``k``, then seed; a network's rows keep their order)."""
    df = pd.concat(frames, ignore_index=True)
    pos = np.array([order[(int(k), int(sd))] for k, sd in zip(df["k"], df["seed"])])
    return df.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)


def _with(df: pd.DataFrame, cols: dict) -> pd.DataFrame:
    for i, (name, v) in enumerate(cols.items()):
        df.insert(i, name, v)
    return df


def objective(networks: pd.DataFrame) -> pd.Series:
    """The regularised objective a coupled-L2 arm minimises: loss + weight_decay / 2 * norm^2."""
    return networks["loss"] + 0.5 * networks["weight_decay"] * networks["norm_sq"]


# ---------------------------------------------------------------------------------------------
# known answers
def validate_llc(settings: dict, *, n_chains: int, seed: int = 0) -> pd.DataFrame:
    """The LLC estimator at this chapter's settings (``n_beta``, ``step_size``,
    ``localization``, draws, burn-in) on the toys of :data:`estimators.llc.TOYS`, whose learning
    coefficient is known. One row per toy and chain."""
    keep = {k: settings[k] for k in ("n_beta", "step_size", "localization", "n_draws", "n_burnin")}
    df = llc_est.validate_on_toys(n=10_000, n_chains=n_chains, seed=seed, **keep)
    for name in ("n_beta", "step_size", "localization"):
        df[name] = settings[name]
    return df


def handbuilt(kind: str, b: Batch, subsets: np.ndarray | None = None, width: int | None = None,
              scale: float = 4.0) -> dict[str, torch.Tensor]:
    """Hand-built networks in this chapter's layout whose training outputs are exactly the
    targets, for every network of ``b`` (all rows must share one task instance and ``K``).

    ``"memorise"``: for each specification bit two hidden units read only the identifier; row
    ``e`` of ``wid`` switches on the unit of the sign ``r_ej`` (the description is ignored).
    ``"derive"``: for each bit ``j``, ``k`` hidden units compute the parity of description bits
    ``subsets[j]`` exactly (``u = #{-1 bits}``, ``(-1)^u = 1 - 2u + 4 relu(u-1) - 4 relu(u-2) ...``);
    the identifier is ignored. ``width`` pads with dead units (default: what the kind needs)."""
    K, m, s = b.K, b.m, b.s
    y = b.y[0]
    if kind == "memorise":
        need = 2 * s
    elif kind == "derive":
        if subsets is None:
            raise ValueError("a hand-built deriver needs the rule's subsets")
        need = int(np.asarray(subsets).size)
    else:
        raise ValueError(f"kind must be 'memorise' or 'derive', got {kind!r}")
    width = width or need
    if width < need:
        raise ValueError(f"a hand-built {kind} network needs width >= {need}, got {width}")
    wid, wd = torch.zeros(K, width), torch.zeros(m, width)
    b0, w1, b1 = torch.zeros(1, width), torch.zeros(width, s), torch.zeros(1, s)
    if kind == "memorise":
        for j in range(s):
            wid[:, 2 * j] = scale * (y[:, j] > 0).float() / b.id_scale
            wid[:, 2 * j + 1] = scale * (y[:, j] < 0).float() / b.id_scale
            w1[2 * j, j], w1[2 * j + 1, j] = 1.0 / scale, -1.0 / scale
    else:
        unit = 0
        for j, sub in enumerate(np.asarray(subsets)):
            k = len(sub)
            b1[0, j] = 1.0
            for i in range(k):                   # relu(u - i), u = (k - sum_S d) / 2
                wd[list(sub), unit] = -math.sqrt(m) / 2
                b0[0, unit] = k / 2 - i
                w1[unit, j] = -2.0 if i == 0 else 4.0 * (-1) ** (i + 1)
                unit += 1
    one = {"wid": wid, "wd": wd, "b0": b0, "w1": w1, "b1": b1}
    return {name: v.unsqueeze(0).repeat(b.n, *([1] * v.dim())) for name, v in one.items()}
