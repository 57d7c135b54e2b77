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

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ...data.digits import DigitsSplit
from ...nets.losses import accuracy, cross_entropy, soft_cross_entropy
from ...nets.mlp import BatchedMLP, forward
from ...nets.seeding import seed_int
from ...nets.train import train_until

N_CLASSES = 10


def _layers(params: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[W_1..W_L, b_1..b_L]`` (the order of ``BatchedMLP.parameters()``) as ``[(W, b), ...]``."""
    k = len(params) // 2
    return list(zip(params[:k], params[k:]))


def logits(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``x (B, d)`` shared or ``(M, B, d)`` per network -> ``(M, B, C)``."""
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
        """``|objective(step) - objective(step - window)|``, ``inf`` before a full window."""
        k = step // self.every
        if k < self.lag:
            return torch.full((len(ids),), float("inf"))
        return (self.hist[k, ids] - self.hist[k - self.lag, ids]).abs()

    def converged(self, ids: torch.Tensor, step: int) -> torch.Tensor:
        return (self.change(ids, step) < self.tol) | (self.hist[step // self.every, ids] < self.tol)


def train_students(init: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   targets: torch.Tensor | None, temps: torch.Tensor, split: DigitsSplit, *,
                   max_epochs: int, lr: float, eval_every: int, conv_window: int, conv_tol: float,
                   freeze_converged: bool, weight_decay: float = 0.0, desc: str = ""):
    """Full-batch Adam on ``M`` networks from the parameters ``init``, keeping each network's
    state of lowest validation cross-entropy (checked every ``eval_every`` epochs).

    ``x (M, n, d)``, ``y (M, n)`` the true labels; ``targets (M, n, C)`` soft labels at
    temperature ``temps (M,)`` (objective ``T^2 CE``), or ``None`` for the hard labels (the
    objective is then the training cross-entropy). With ``freeze_converged`` each network stops
    (and is frozen) at the first check where it meets the convergence criterion; otherwise
    all train for ``max_epochs``.

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
        return cross_entropy(z, d["y"]) if targets is None else soft_cross_entropy(z, d["t"], d["T"])

    def loss_fn(p, ids, step):
        d = data(ids)
        return objective(logits(p, d["x"]), d)

    rows = []

    def on_check(p, ids, step):
        d = data(ids)
        z = logits(p, d["x"])
        obj = objective(z, d)
        mon.record(obj, ids, step)
        rows.append(np.column_stack([np.full(len(ids), step), ids.numpy(), obj.numpy(),
                                     cross_entropy(z, d["y"]).numpy(),
                                     cross_entropy(logits(p, split.x_val), split.y_val).numpy(),
                                     cross_entropy(logits(p, split.x_test), split.y_test).numpy()]))

    res = train_until(list(init), loss_fn, lr=lr, max_steps=max_epochs, check_every=eval_every,
                      reached=(lambda p, ids, step: mon.converged(ids, step)) if freeze_converged else None,
                      on_check=on_check, options={"weight_decay": weight_decay} if weight_decay else None,
                      keep_best=lambda p, ids, step: cross_entropy(logits(p, split.x_val), split.y_val),
                      desc=desc)
    curves = pd.DataFrame(np.concatenate(rows), columns=["epoch", "model", "objective", "train_ce",
                                                         "val_ce", "test_ce"])
    curves[["epoch", "model"]] = curves[["epoch", "model"]].astype(int)
    return res, curves, mon


def train_teachers(split: DigitsSplit, idx: torch.Tensor, subset_seeds: list[int], members: int,
                   hidden: int, epochs: int, lr: float, weight_decay: float) -> dict[str, torch.Tensor]:
    """An ensemble of ``members`` MLPs ``64-hidden-hidden-10`` per training subset, each
    early-stopped on the validation set (Adam with L2 weight decay). ``idx (S, n)`` indexes
    ``split.x_pool``; subset ``i`` belongs to seed ``subset_seeds[i]``.

    Returns the ensemble's logits, ``log(mean softmax)``, on each subset's own training points
    (``train (S, n, C)``), on the validation set (``val (S, n_val, C)``) and the test set
    (``test (S, n_test, C)``).
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

    return {"train": ensemble(x), "val": ensemble(split.x_val), "test": ensemble(split.x_test)}


def evaluate(params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, split: DigitsSplit,
             teacher_train: torch.Tensor, teacher_test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hard-label CE and accuracy on the network's own training points ``x (M, n, d)``,
    ``y (M, n)``, on the validation and test sets, and agreement of the predicted class with
    the teacher's ``(M, n, C)`` / ``(M, n_test, C)``. Every value ``(M,)``."""
    with torch.no_grad():
        z_tr, z_te = logits(params, x), logits(params, split.x_test)
        return {"train_ce": cross_entropy(z_tr, y),
                "val_ce": cross_entropy(logits(params, split.x_val), split.y_val),
                "test_ce": cross_entropy(z_te, split.y_test), "train_acc": accuracy(z_tr, y),
                "test_acc": accuracy(z_te, split.y_test),
                "agree_train": (z_tr.argmax(-1) == teacher_train.argmax(-1)).float().mean(-1),
                "agree_test": (z_te.argmax(-1) == teacher_test.argmax(-1)).float().mean(-1)}


def run_cell(split: DigitsSplit, idx: torch.Tensor, seeds: list[int], width: int,
             temperatures: list[float], teacher: dict, *, student_epochs: int, hard_max_epochs: int,
             lr: float, eval_every: int, conv_window: int, conv_tol: float
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Students of one width on one training size: hard-label students (each trained until it
    meets the convergence criterion, at most ``hard_max_epochs``) and distilled students at
    every temperature (``student_epochs``). For a seed, every condition starts from the same
    initial weights and sees the same inputs ``split.x_pool[idx[i]]``.

    Returns ``(metrics, curves)``: one metrics row per (seed, condition, temperature,
    checkpoint in {final, early_stopped}); curves every ``eval_every`` epochs.
    """
    n = idx.shape[1]
    x_s, y_s = split.x_pool[idx], split.y_pool[idx]                      # (S, n, d), (S, n)
    init = [p.detach() for p in BatchedMLP(
        len(seeds), [64, width, N_CLASSES],
        seeds=[seed_int("ch01", "student", n, width, s) for s in seeds]).parameters()]
    metrics, curves = [], []
    groups = [("hard", [1.0], hard_max_epochs, True),
              ("distill", [float(t) for t in temperatures], student_epochs, False)]
    for kind, temps, budget, freeze in groups:
        r = len(temps)
        labels = [(t, s) for t in temps for s in seeds]
        x, y = x_s.repeat(r, 1, 1), y_s.repeat(r, 1)
        targets = None if kind == "hard" else torch.cat([torch.softmax(teacher["train"] / t, -1) for t in temps])
        res, c, mon = train_students([p.repeat(r, 1, 1) for p in init], x, y, targets,
                                     torch.tensor([t for t, _ in labels]), split, max_epochs=budget,
                                     lr=lr, eval_every=eval_every, conv_window=conv_window,
                                     conv_tol=conv_tol, freeze_converged=freeze,
                                     desc=f"{kind} students n={n} h={width}")
        ids = torch.arange(len(labels))
        last = torch.as_tensor(res.steps)
        change = torch.stack([mon.change(ids[i:i + 1], int(last[i]))[0] for i in range(len(labels))])
        converged = torch.stack([mon.converged(ids[i:i + 1], int(last[i]))[0] for i in range(len(labels))])
        t_tr, t_te = teacher["train"].repeat(r, 1, 1), teacher["test"].repeat(r, 1, 1)
        for ckpt, params, epochs in (("final", res.params, res.steps), ("early_stopped", res.best_params, res.best_steps)):
            ev = evaluate(params, x, y, split, t_tr, t_te)
            for i, (t, s) in enumerate(labels):
                metrics.append({"n_train": n, "width": width, "seed": s, "condition": kind, "temperature": t,
                                "checkpoint": ckpt, "epoch": int(epochs[i]), "epochs_run": int(res.steps[i]),
                                "converged": bool(converged[i]), "final_change": float(change[i]),
                                **{k: float(v[i]) for k, v in ev.items()}})
        c["n_train"], c["width"], c["condition"] = n, width, kind
        c["temperature"] = [labels[i][0] for i in c["model"]]
        c["seed"] = [labels[i][1] for i in c["model"]]
        curves.append(c.drop(columns="model"))
    return pd.DataFrame(metrics), pd.concat(curves, ignore_index=True)


def teacher_metrics(split: DigitsSplit, teacher: dict, idx: torch.Tensor, seeds: list[int]) -> pd.DataFrame:
    """One row per training subset: the teacher ensemble's CE on it and on the validation and
    test sets, and its test accuracy."""
    y_tr = split.y_pool[idx]
    with torch.no_grad():
        out = {"train_ce": cross_entropy(teacher["train"], y_tr),
               "val_ce": cross_entropy(teacher["val"], split.y_val),
               "test_ce": cross_entropy(teacher["test"], split.y_test),
               "test_acc": accuracy(teacher["test"], split.y_test)}
    return pd.DataFrame([{"n_train": idx.shape[1], "seed": s, **{k: float(v[i]) for k, v in out.items()}}
                         for i, s in enumerate(seeds)])


def run(train_sizes: list[int], widths: list[int], temperatures: list[float], seeds: list[int],
        student_epochs: int, hard_max_epochs: int, student_lr: float, eval_every: int,
        conv_window: int, conv_tol: float, teacher_members: int, teacher_hidden: int,
        teacher_epochs: int, teacher_lr: float, teacher_weight_decay: float
        ) -> dict[str, pd.DataFrame]:
    """The whole experiment: for every training size, the teachers and then every student.

    Returns the tidy tables ``metrics`` (one row per student and checkpoint), ``curves`` (every
    ``eval_every`` epochs while a student trains), ``teachers`` (one row per training subset)
    and ``split`` (the sizes of the fixed split)."""
    from ...data import digits as data

    if len(seeds) < 2:
        raise ValueError(f"need at least 2 seeds for intervals over seeds, got {len(seeds)}")
    split = data.digits_split()
    if max(train_sizes) > len(split.y_pool):
        raise ValueError(f"train_sizes must not exceed the training pool of {len(split.y_pool)} digits, "
                         f"got {max(train_sizes)}")
    metrics, curves, teachers = [], [], []
    for n in train_sizes:
        idx = data.stratified_subsets(split.y_pool, n, [seed_int("ch01", "subset", n, s) for s in seeds])
        teacher = train_teachers(split, idx, seeds, teacher_members, teacher_hidden, teacher_epochs,
                                 teacher_lr, teacher_weight_decay)
        teachers.append(teacher_metrics(split, teacher, idx, seeds))
        for w in widths:
            m, c = run_cell(split, idx, seeds, w, temperatures, teacher, student_epochs=student_epochs,
                            hard_max_epochs=hard_max_epochs, lr=student_lr, eval_every=eval_every,
                            conv_window=conv_window, conv_tol=conv_tol)
            metrics.append(m)
            curves.append(c)
    sizes = pd.DataFrame([{"part": "pool", "size": len(split.y_pool)},
                          {"part": "validation", "size": len(split.y_val)},
                          {"part": "test", "size": len(split.y_test)}])
    return {"metrics": pd.concat(metrics, ignore_index=True),
            "curves": pd.concat(curves, ignore_index=True),
            "teachers": pd.concat(teachers, ignore_index=True), "split": sizes}
