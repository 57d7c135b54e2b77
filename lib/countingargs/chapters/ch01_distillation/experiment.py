"""Distillation vs training to convergence (chapter 01): the runs.

Every training here is :func:`~countingargs.nets.train.train_until` on the parameters of a
:class:`~countingargs.nets.mlp.BatchedMLP`: the networks of one batch differ in seed (training
subset and initial weights), target (hard labels or a teacher's soft labels) and temperature,
and full-batch Adam treats each one exactly as if it trained alone. Full-batch training makes
"convergence" precise: the training objective stops moving.

Shapes: ``M`` networks, ``n`` training points each, ``C = 10`` classes, ``d = 64`` pixels;
parameters come as ``[W_1, ..., W_L, b_1, ..., b_L]`` with ``W_l (M, a, b)``, ``b_l (M, 1, b)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ...data.digits import DigitsSplit
from ...nets import losses
from ...nets.losses import accuracy
from ...nets.mlp import BatchedMLP, forward
from ...nets.seeding import seed_int
from ...nets.train import train_until

N_CLASSES = 10


def ce(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Hard-label cross-entropy per network, ``(M,)`` (the shared loss, its faster form)."""
    return losses.cross_entropy(z, target, fast=True)


def soft_ce(z: torch.Tensor, probs: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
    """Distillation objective per network, ``(M,)`` (the shared loss, its faster form)."""
    return losses.soft_cross_entropy(z, probs, temps, fast=True)


def _layers(params: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[W_1..W_L, b_1..b_L]`` (the order of ``BatchedMLP.parameters()``) as ``[(W, b), ...]``."""
    k = len(params) // 2
    return list(zip(params[:k], params[k:]))


def _rows_multiple(params: Sequence[torch.Tensor]) -> int:
    """The least row count ``q`` such that ``q`` rows of every layer's output fill a multiple of
    4 floats (16 bytes)."""
    q = 1
    for w in params[:len(params) // 2]:
        q = math.lcm(q, 4 // math.gcd(4, w.shape[-1]))
    return q


def logits(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``x (B, d)`` shared or ``(M, B, d)`` per network -> ``(M, B, C)``.

    Each network's output block starts on a 16-byte boundary, whatever its place in the batch:
    when ``B`` rows of some layer's output are not a multiple of 4 floats (the 297 validation
    digits times 10 classes), ``x`` gets zero rows up to the next such count, dropped from the
    result. The CPU matmul rounds a block that starts off that boundary differently in the last
    bit, so without this a network's validation logits would depend on its place in the batch
    (on which other networks share it), and so on how the seeds are cut into chunks."""
    b, q = x.shape[-2], _rows_multiple(params)
    if b % q:
        x = torch.cat([x, x.new_zeros(*x.shape[:-2], q - b % q, x.shape[-1])], -2)
        return forward(_layers(params), x)[:, :b]
    return forward(_layers(params), x)


class Monitor:
    """The convergence criterion over a training run, for ``M`` networks checked every
    ``every`` steps: a network has converged when its training objective moved by less than
    ``tol`` over the last ``window`` steps, or fell below ``tol``.

    ``record(obj, ids, step)`` stores the objective ``(len(ids),)`` of networks ``ids``;
    ``converged(ids, step)`` applies the criterion to them at that check."""

    def __init__(self, m: int, max_steps: int, every: int, window: int, tol: float):
        if window % every or max_steps % every:
            raise ValueError(f"max_steps ({max_steps}) and the convergence window ({window}) must be "
                             f"multiples of the check interval ({every})")
        self.every, self.lag, self.tol = every, window // every, tol
        self.hist = torch.full((max_steps // every + 1, m), float("nan"))

    def record(self, obj: torch.Tensor, ids: torch.Tensor, step: int) -> None:
        self.hist[step // self.every, ids] = obj

    def change(self, ids: torch.Tensor, step: int) -> torch.Tensor:
        """``|objective(step) - objective(step - window)|``; NaN before a full window (a network
        can meet the criterion earlier only by falling below ``tol``)."""
        k = step // self.every
        if k < self.lag:
            return torch.full((len(ids),), float("nan"))
        return (self.hist[k, ids] - self.hist[k - self.lag, ids]).abs()

    def converged(self, ids: torch.Tensor, step: int) -> torch.Tensor:
        return (self.change(ids, step) < self.tol) | (self.hist[step // self.every, ids] < self.tol)


def train_students(init: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   targets: torch.Tensor | None, temps: torch.Tensor, split: DigitsSplit, *,
                   max_epochs: int, lr: float, eval_every: int, conv_window: int, conv_tol: float,
                   freeze_converged: bool, weight_decay: float = 0.0, on_step=None, desc: str = ""):
    """Full-batch Adam on ``M`` networks from the parameters ``init``, keeping each network's
    state of lowest validation cross-entropy (checked every ``eval_every`` epochs).

    ``x (M, n, d)``, ``y (M, n)`` the true labels; ``targets (M, n, C)`` soft labels at
    temperature ``temps (M,)`` (objective ``T^2 CE``), or ``None`` for the hard labels (the
    objective is then the training cross-entropy). With ``freeze_converged`` each network stops
    (and is frozen) at the first check where it meets the convergence criterion; otherwise
    all train for ``max_epochs``. ``on_step(params, ids, step, objective)`` is called at every
    step, before the update, with the networks still training and their objective ``(len(ids),)``
    (for hard labels, their training cross-entropy) at that step.

    Returns ``(trained, curves, monitor)``: the :class:`~countingargs.nets.train.Trained`
    result, a DataFrame (``epoch, model, objective, train_ce, val_ce, test_ce``) with one row per
    check and network still training, and the convergence :class:`Monitor`.
    """
    m = x.shape[0]
    mon = Monitor(m, max_epochs, eval_every, conv_window, conv_tol)
    cache: dict = {}

    def data(ids):
        if cache.get("ids") is None or not torch.equal(cache["ids"], ids):
            cache.update(ids=ids.clone(), x=x[ids], y=y[ids],
                         t=None if targets is None else targets[ids], T=temps[ids])
        return cache

    def objective(z, d):
        return ce(z, d["y"]) if targets is None else soft_ce(z, d["t"], d["T"])

    def loss_fn(p, ids, step):
        d = data(ids)
        obj = objective(logits(p, d["x"]), d)
        if on_step is not None:
            with torch.no_grad():
                on_step([w.detach() for w in p], ids, step, obj.detach())
        return obj

    rows = []

    def on_check(p, ids, step):
        d = data(ids)
        z = logits(p, d["x"])
        obj = objective(z, d)
        mon.record(obj, ids, step)
        rows.append(np.column_stack([np.full(len(ids), step), ids.numpy(), obj.numpy(),
                                     ce(z, d["y"]).numpy(),
                                     ce(logits(p, split.x_val), split.y_val).numpy(),
                                     ce(logits(p, split.x_test), split.y_test).numpy()]))

    res = train_until(list(init), loss_fn, lr=lr, max_steps=max_epochs, check_every=eval_every,
                      reached=(lambda p, ids, step: mon.converged(ids, step)) if freeze_converged else None,
                      on_check=on_check, options={"weight_decay": weight_decay} if weight_decay else None,
                      keep_best=lambda p, ids, step: ce(logits(p, split.x_val), split.y_val),
                      desc=desc)
    curves = pd.DataFrame(np.concatenate(rows), columns=["epoch", "model", "objective", "train_ce",
                                                         "val_ce", "test_ce"])
    curves[["epoch", "model"]] = curves[["epoch", "model"]].astype(int)
    return res, curves, mon


def _held_out(params: Sequence[torch.Tensor], rows: torch.Tensor, split: DigitsSplit) -> dict[str, torch.Tensor]:
    """Validation and test CE and test accuracy of networks ``rows`` of ``params``: each ``(len(rows),)``."""
    sub = [w[rows] for w in params]
    z_te = logits(sub, split.x_test)
    return {"val_ce": ce(logits(sub, split.x_val), split.y_val),
            "test_ce": ce(z_te, split.y_test), "test_acc": accuracy(z_te, split.y_test)}


class Crossings:
    """Where each hard-label student's training CE first falls to given levels (the loss-matched
    comparison). ``levels (M, K)``: for network ``i``, ``K`` training-CE levels (the final
    training CE of the distilled students of the same seed, one per temperature).

    Called at every step with the training CE ``(len(ids),)`` of the state *before* the update
    (state ``step``): the first step at which ``train_ce <= level`` is recorded with the held-out
    CE of that state, and with the training CE one step earlier (so the level lies between the
    two). Full-batch steps at these learning rates move the training CE little, so this picks
    the state within one step of the level; no interpolation."""

    FIELDS = ("epoch", "train_ce", "prev_train_ce", "val_ce", "test_ce", "test_acc")

    def __init__(self, levels: torch.Tensor, split: DigitsSplit):
        self.levels, self.split = levels, split
        m, k = levels.shape
        self.found = {f: torch.full((m, k), float("nan")) for f in self.FIELDS}
        self.last = torch.full((m,), float("nan"))

    def __call__(self, params, ids, step, train_ce):
        new = (train_ce.unsqueeze(1) <= self.levels[ids]) & self.found["epoch"][ids].isnan()
        rows = new.any(1).nonzero().squeeze(1)
        if len(rows):
            held = _held_out(params, rows, self.split)
            for j, r in enumerate(rows.tolist()):
                i, cols = int(ids[r]), new[r].nonzero().squeeze(1)
                vals = {"epoch": float(step), "train_ce": train_ce[r], "prev_train_ce": self.last[i],
                        **{k: v[j] for k, v in held.items()}}
                for f in self.FIELDS:
                    self.found[f][i, cols] = vals[f]
        self.last[ids] = train_ce

    def finish(self, steps: np.ndarray, final: dict[str, torch.Tensor]) -> None:
        """A network frozen at the step it first reached a level is never called at that step:
        take its final state (``final``: :func:`evaluate` of the final parameters)."""
        late = self.found["epoch"].isnan() & (final["train_ce"].unsqueeze(1) <= self.levels)
        for i, k in late.nonzero().tolist():
            vals = {"epoch": float(steps[i]), "prev_train_ce": self.last[i],
                    **{f: final[f][i] for f in ("train_ce", "val_ce", "test_ce", "test_acc")}}
            for f in self.FIELDS:
                self.found[f][i, k] = vals[f]


class Probes:
    """Training and held-out CE of every network at given epochs (the compute view: the epoch
    at which a fixed compute budget runs out for this width). A network that stopped before an
    epoch (converged and frozen, or at the cap) keeps its final values there."""

    def __init__(self, m: int, epochs: list[int], split: DigitsSplit):
        self.epochs, self.split = sorted(set(int(e) for e in epochs)), split
        self.vals = {f: torch.full((m, len(self.epochs)), float("nan")) for f in ("train_ce", "val_ce", "test_ce")}

    def __call__(self, params, ids, step, train_ce):
        if step in self.epochs:
            j = self.epochs.index(step)
            held = _held_out(params, torch.arange(len(ids)), self.split)
            self.vals["train_ce"][ids, j] = train_ce
            for f in ("val_ce", "test_ce"):
                self.vals[f][ids, j] = held[f]

    def finish(self, steps: np.ndarray, final: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fill the epochs at or after each network's last step with its final values; returns
        ``stopped (M, E)``: whether the network had stopped before the probe epoch."""
        last, at = torch.as_tensor(steps).unsqueeze(1), torch.tensor(self.epochs).unsqueeze(0)
        for f, v in self.vals.items():
            v[last <= at] = final[f].unsqueeze(1).expand_as(v)[last <= at]
        return last < at


def train_teachers(split: DigitsSplit, idx: torch.Tensor, subset_seeds: list[int], members: int,
                   hidden: int, epochs: int, lr: float, weight_decay: float) -> dict[str, torch.Tensor]:
    """An ensemble of ``members`` MLPs ``64-hidden-hidden-10`` per training subset, each
    early-stopped on the validation set (Adam with L2 weight decay). ``idx (S, n)`` indexes
    ``split.x_pool``; subset ``i`` belongs to seed ``subset_seeds[i]``.

    Returns the ensemble's logits, ``log(mean softmax)``, on each subset's own training points
    (``train (S, n, C)``), on the validation set (``val (S, n_val, C)``) and the test set
    (``test (S, n_test, C)``), and each member's early-stopping epoch (``best_epoch (S, members)``).
    """
    s, n = idx.shape
    rep = idx.repeat_interleave(members, dim=0)                      # (S*members, n)
    x, y = split.x_pool[rep], split.y_pool[rep]
    seeds = [seed_int("ch01", "teacher", n, sd, k) for sd in subset_seeds for k in range(members)]
    init = BatchedMLP(s * members, [64, hidden, hidden, N_CLASSES], seeds=seeds).parameters()
    res, _, _ = train_students([p.detach() for p in init], x, y, None, torch.ones(s * members), split,
                               max_epochs=epochs, lr=lr, eval_every=10, conv_window=epochs,
                               conv_tol=0.0, freeze_converged=False, weight_decay=weight_decay,
                               desc=f"teachers n={n}")

    def ensemble(xx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = torch.softmax(logits(res.best_params, xx), -1)
            p = p.view(s, members, *p.shape[1:]).mean(1)
        return torch.log(p.clamp_min(1e-12))

    return {"train": ensemble(x), "val": ensemble(split.x_val), "test": ensemble(split.x_test),
            "best_epoch": torch.as_tensor(res.best_steps).view(s, members).float()}


def evaluate(params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, split: DigitsSplit,
             teacher_train: torch.Tensor, teacher_test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hard-label CE and accuracy on the network's own training points ``x (M, n, d)``,
    ``y (M, n)``, on the validation and test sets, and agreement of the predicted class with
    the teacher's ``(M, n, C)`` / ``(M, n_test, C)``. Every value ``(M,)``."""
    with torch.no_grad():
        z_tr, z_te = logits(params, x), logits(params, split.x_test)
        return {"train_ce": ce(z_tr, y),
                "val_ce": ce(logits(params, split.x_val), split.y_val),
                "test_ce": ce(z_te, split.y_test), "train_acc": accuracy(z_tr, y),
                "test_acc": accuracy(z_te, split.y_test),
                "agree_train": (z_tr.argmax(-1) == teacher_train.argmax(-1)).float().mean(-1),
                "agree_test": (z_te.argmax(-1) == teacher_test.argmax(-1)).float().mean(-1)}


def n_params(width: int) -> int:
    """Parameters of one student ``64-width-10`` (weights and biases)."""
    return BatchedMLP(1, [64, width, N_CLASSES]).n_params()


def budget_epochs(budget: float, width: int) -> int:
    """Full-batch epochs a student of ``width`` can train for within ``budget`` parameter-epochs."""
    return int(round(budget / n_params(width)))


def run_cell(split: DigitsSplit, idx: torch.Tensor, seeds: list[int], width: int,
             temperatures: list[float], teacher: dict, budgets: list[float], *, student_epochs: int,
             hard_max_epochs: int, lr: float, eval_every: int, conv_window: int, conv_tol: float
             ) -> dict[str, pd.DataFrame]:
    """Students of one width on one training size: distilled students at every temperature
    (``student_epochs``), then hard-label students (each trained until it meets the
    convergence criterion, at most ``hard_max_epochs``). For a seed, every condition starts from
    the same initial weights and sees the same inputs ``split.x_pool[idx[i]]``.

    While the hard students train, two things are recorded at every step: the first step where
    each one's training CE falls to the final training CE of the distilled student of the same
    seed (one level per temperature, :class:`Crossings`), and its state at the epochs where each
    compute budget (parameter-epochs) runs out for this width (:class:`Probes`).

    Returns tables ``metrics`` (one row per seed, condition, temperature and checkpoint in
    {final, early_stopped}), ``curves`` (every ``eval_every`` epochs), ``matched`` (one row per
    hard student and temperature) and ``budget`` (one row per hard student and budget).
    """
    n = idx.shape[1]
    x_s, y_s = split.x_pool[idx], split.y_pool[idx]                      # (S, n, d), (S, n)
    init = [p.detach() for p in BatchedMLP(
        len(seeds), [64, width, N_CLASSES],
        seeds=[seed_int("ch01", "student", n, width, s) for s in seeds]).parameters()]
    temps = [float(t) for t in temperatures]
    out: dict[str, list] = {"metrics": [], "curves": [], "matched": [], "budget": []}
    dist_train_ce = None
    for kind, ts, epochs_max, freeze in (("distill", temps, student_epochs, False),
                                         ("hard", [1.0], hard_max_epochs, True)):
        r = len(ts)
        labels = [(t, s) for t in ts for s in seeds]
        x, y = x_s.repeat(r, 1, 1), y_s.repeat(r, 1)
        targets = None if kind == "hard" else torch.cat([torch.softmax(teacher["train"] / t, -1) for t in ts])
        on_step = None
        if kind == "hard":
            cross = Crossings(dist_train_ce, split)
            probes = Probes(len(seeds), [budget_epochs(b, width) for b in budgets], split)

            def on_step(p, ids, step, train_ce):
                cross(p, ids, step, train_ce)
                probes(p, ids, step, train_ce)
        res, c, mon = train_students(
            [p.repeat(r, 1, 1) for p in init], x, y, targets, torch.tensor([t for t, _ in labels]), split,
            max_epochs=epochs_max, lr=lr, eval_every=eval_every, conv_window=conv_window, conv_tol=conv_tol,
            freeze_converged=freeze, desc=f"{kind} students n={n} h={width}", on_step=on_step)
        ids = torch.arange(len(labels))
        change = torch.cat([mon.change(ids[i:i + 1], int(res.steps[i])) for i in ids])
        converged = torch.cat([mon.converged(ids[i:i + 1], int(res.steps[i])) for i in ids])
        t_tr, t_te = teacher["train"].repeat(r, 1, 1), teacher["test"].repeat(r, 1, 1)
        final = evaluate(res.params, x, y, split, t_tr, t_te)
        for ckpt, ev, epochs in (("final", final, res.steps),
                                 ("early_stopped", evaluate(res.best_params, x, y, split, t_tr, t_te), res.best_steps)):
            for i, (t, s) in enumerate(labels):
                out["metrics"].append({
                    "n_train": n, "width": width, "seed": s, "condition": kind, "temperature": t,
                    "checkpoint": ckpt, "epoch": int(epochs[i]), "epochs_run": int(res.steps[i]),
                    "converged": bool(converged[i]), "final_change": float(change[i]),
                    **{k: float(v[i]) for k, v in ev.items()}})
        c["n_train"], c["width"], c["condition"] = n, width, kind
        c["temperature"] = [labels[i][0] for i in c["model"]]
        c["seed"] = [labels[i][1] for i in c["model"]]
        out["curves"].append(c.drop(columns="model"))
        if kind == "distill":
            dist_train_ce = final["train_ce"].view(r, len(seeds)).T.contiguous()       # (S, K)
            continue
        cross.finish(res.steps, final)
        stopped = probes.finish(res.steps, final)
        for i, s in enumerate(seeds):
            for k, t in enumerate(temps):
                row = {f: float(cross.found[f][i, k]) for f in Crossings.FIELDS}
                out["matched"].append({"n_train": n, "width": width, "seed": s, "temperature": t,
                                       "level": float(dist_train_ce[i, k]),
                                       "matched": not np.isnan(row["epoch"]), **row})
            for b in budgets:
                j = probes.epochs.index(budget_epochs(b, width))
                out["budget"].append({"n_train": n, "width": width, "seed": s, "budget": float(b),
                                      "n_params": n_params(width), "epoch": probes.epochs[j],
                                      "epochs_run": int(res.steps[i]), "stopped": bool(stopped[i, j]),
                                      **{f: float(v[i, j]) for f, v in probes.vals.items()}})
    return {"metrics": pd.DataFrame(out["metrics"]), "curves": pd.concat(out["curves"], ignore_index=True),
            "matched": pd.DataFrame(out["matched"]), "budget": pd.DataFrame(out["budget"])}


def teacher_metrics(split: DigitsSplit, teacher: dict, idx: torch.Tensor, seeds: list[int]) -> pd.DataFrame:
    """One row per training subset: the teacher ensemble's CE on it and on the validation and
    test sets, its test accuracy, and its members' median and latest early-stopping epochs."""
    y_tr = split.y_pool[idx]
    with torch.no_grad():
        out = {"train_ce": ce(teacher["train"], y_tr),
               "val_ce": ce(teacher["val"], split.y_val),
               "test_ce": ce(teacher["test"], split.y_test),
               "test_acc": accuracy(teacher["test"], split.y_test),
               "best_epoch_median": teacher["best_epoch"].median(1).values,
               "best_epoch_max": teacher["best_epoch"].max(1).values}
    return pd.DataFrame([{"n_train": idx.shape[1], "seed": s, **{k: float(v[i]) for k, v in out.items()}}
                         for i, s in enumerate(seeds)])


#: seeds per chunk on a Dask scheduler by default (in process: all seeds of a training size in
#: one chunk, the fastest there: at the standard parameters and 250 training digits, groups of 5
#: seeds took 9% longer)
SEEDS_PER_CHUNK_CLUSTER = 5


def seed_chunk(seed: int, chunk: int, n_train: int, seeds: list[int], widths: list[int],
               temperatures: list[float], budgets: list[float], student_epochs: int,
               hard_max_epochs: int, student_lr: float, eval_every: int, conv_window: int,
               conv_tol: float, teacher_members: int, teacher_hidden: int, teacher_epochs: int,
               teacher_lr: float, teacher_weight_decay: float) -> dict[str, pd.DataFrame]:
    """One training size and one group of seeds (``seed``: the group's first, for error
    reports): their training subsets, teachers and students of every width (:func:`run_cell`).

    Every random stream belongs to one seed (subset ``("ch01", "subset", n, s)``, teacher and
    student initial weights), every loss and update is per network, and a batched matmul
    gives each network the same bits whatever shares its batch: a seed's results do not
    depend on which other seeds share its chunk. Returns the tables of :func:`run` (less
    ``split``) for these seeds, in the order :func:`run` sorts them into."""
    from ...data import digits as data

    split = data.digits_split()
    idx = data.stratified_subsets(split.y_pool, n_train, [seed_int("ch01", "subset", n_train, s) for s in seeds])
    teacher = train_teachers(split, idx, seeds, teacher_members, teacher_hidden, teacher_epochs,
                             teacher_lr, teacher_weight_decay)
    tables: dict[str, list] = {"metrics": [], "curves": [], "matched": [], "budget": [],
                               "teachers": [teacher_metrics(split, teacher, idx, seeds)]}
    for w in widths:
        cell = run_cell(split, idx, seeds, w, temperatures, teacher, budgets,
                        student_epochs=student_epochs, hard_max_epochs=hard_max_epochs, lr=student_lr,
                        eval_every=eval_every, conv_window=conv_window, conv_tol=conv_tol)
        for name, df in cell.items():
            tables[name].append(df)
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in tables.items()}


def _in_run_order(name: str, df: pd.DataFrame, train_sizes, widths, temperatures, seeds, budgets) -> pd.DataFrame:
    """Rows of the chunks' table ``name`` in the order of one batched run over all seeds:
    training size, width, then (metrics) condition, checkpoint, temperature, seed; (curves)
    condition, epoch, temperature, seed; (matched) seed, temperature; (budget) seed, budget;
    (teachers) seed. A stable sort, so rows equal in every key keep their chunk order."""
    pos = lambda values: {v: i for i, v in reversed(list(enumerate(values)))}  # noqa: E731 - first place
    keys = {"n_train": pos(train_sizes), "width": pos(widths), "condition": {"distill": 0, "hard": 1},
            "checkpoint": {"final": 0, "early_stopped": 1}, "temperature": pos([float(t) for t in temperatures]),
            "seed": pos(seeds), "budget": pos([float(b) for b in budgets]), "epoch": None}
    order = {"metrics": ["n_train", "width", "condition", "checkpoint", "temperature", "seed"],
             "curves": ["n_train", "width", "condition", "epoch", "temperature", "seed"],
             "matched": ["n_train", "width", "seed", "temperature"],
             "budget": ["n_train", "width", "seed", "budget"], "teachers": ["n_train", "seed"]}[name]
    cols = {f"_key_{k}": df[k] if keys[k] is None else df[k].map(keys[k]).fillna(-1) for k in order}
    keyed = df.assign(**cols)
    return keyed.sort_values(list(cols), kind="stable").drop(columns=list(cols)).reset_index(drop=True)


def run(train_sizes: list[int], widths: list[int], temperatures: list[float], seeds: list[int],
        student_epochs: int, hard_max_epochs: int, student_lr: float, eval_every: int,
        conv_window: int, conv_tol: float, teacher_members: int, teacher_hidden: int,
        teacher_epochs: int, teacher_lr: float, teacher_weight_decay: float, budgets: list[float],
        seeds_per_chunk: int | None = None, scheduler: str | None = None
        ) -> dict[str, pd.DataFrame]:
    """The whole experiment: for every training size, the teachers and then every student.

    The work is cut into chunks of :func:`countingargs.chunks.map_chunks`, one per training size
    and group of ``seeds_per_chunk`` seeds (:func:`seed_chunk`), run in process or on the Dask
    ``scheduler`` (``None``: the environment's ``COUNTINGARGS_SCHEDULER``); the tables are the
    same bytes for any group size and any number of workers. ``seeds_per_chunk=None``: all
    seeds in process, :data:`SEEDS_PER_CHUNK_CLUSTER` on a Dask scheduler (a checkpointed run
    resumes its finished chunks under the same grouping only).

    Returns the tidy tables ``metrics`` (one row per student and checkpoint), ``curves`` (every
    ``eval_every`` epochs while a student trains), ``matched`` (loss-matched states of the
    hard students), ``budget`` (hard students where each compute budget runs out),
    ``teachers`` (one row per training subset) and ``split`` (the sizes of the fixed split)."""
    from ...chunks import default_scheduler, map_chunks, parse_scheduler
    from ...data import digits as data

    if len(seeds) < 2:
        raise ValueError(f"need at least 2 seeds for intervals over seeds, got {len(seeds)}")
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"budgets must be a non-empty list of positive parameter-epochs, got {budgets}")
    if scheduler is None:
        scheduler = default_scheduler()
    if seeds_per_chunk is None:
        in_process = parse_scheduler(scheduler)[0] == "inprocess"
        seeds_per_chunk = len(seeds) if in_process else SEEDS_PER_CHUNK_CLUSTER
    if seeds_per_chunk < 1:
        raise ValueError(f"seeds_per_chunk must be >= 1, got {seeds_per_chunk}")
    split = data.digits_split()
    if max(train_sizes) > len(split.y_pool):
        raise ValueError(f"train_sizes must not exceed the training pool of {len(split.y_pool)} digits, "
                         f"got {max(train_sizes)}")
    seeds = [int(s) for s in seeds]
    groups = [seeds[i:i + seeds_per_chunk] for i in range(0, len(seeds), seeds_per_chunk)]
    common = dict(widths=[int(w) for w in widths], temperatures=[float(t) for t in temperatures],
                  budgets=[float(b) for b in budgets], student_epochs=int(student_epochs),
                  hard_max_epochs=int(hard_max_epochs), student_lr=float(student_lr),
                  eval_every=int(eval_every), conv_window=int(conv_window), conv_tol=float(conv_tol),
                  teacher_members=int(teacher_members), teacher_hidden=int(teacher_hidden),
                  teacher_epochs=int(teacher_epochs), teacher_lr=float(teacher_lr),
                  teacher_weight_decay=float(teacher_weight_decay))
    chunks = [dict(seed=g[0], chunk=i * len(groups) + j, n_train=int(n), seeds=g, **common)
              for i, n in enumerate(train_sizes) for j, g in enumerate(groups)]
    res = map_chunks(seed_chunk, chunks, name="distillation", scheduler=scheduler)
    tables = {name: _in_run_order(name, pd.concat([r[name] for r in res.results], ignore_index=True),
                                  train_sizes, widths, temperatures, seeds, budgets)
              for name in ("metrics", "curves", "matched", "budget", "teachers")}
    sizes = pd.DataFrame([{"part": "pool", "size": len(split.y_pool)},
                          {"part": "validation", "size": len(split.y_val)},
                          {"part": "test", "size": len(split.y_test)}])
    return {**tables, "split": sizes}
