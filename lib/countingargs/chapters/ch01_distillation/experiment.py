"""Distillation vs training to convergence (chapter 1).

Every function trains *many* small networks at once with :class:`~countingargs.batched.BatchedMLP`:
networks differ in seed, training subset, target (hard labels or a teacher's soft labels) and
temperature, and all of them share one batched tensor per layer. Training is full-batch Adam,
so "convergence" has a precise meaning: the training objective stops moving.

Shapes: ``M`` networks, ``n`` training points each, ``C = 10`` classes, ``d = 64`` pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...data.digits import DigitsSplit
from ...nets.losses import cross_entropy as batched_cross_entropy
from ...nets.mlp import BatchedMLP
from ...nets.seeding import seed_int
from ...stats import progress


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
    """Per-network distillation objective ``T^2 * CE(p_target, softmax(logits / T))``.

    ``logits (M, n, C)``, ``target_probs (M, n, C)`` (already at temperature T; one-hot for hard
    labels), ``temps (M,)``. Returns ``(M,)``. With ``T = 1`` and one-hot targets this is the
    ordinary cross-entropy on the labels.
    """
    t = temps.view(-1, 1, 1)
    logq = torch.log_softmax(logits / t, dim=-1)
    return -(target_probs * logq).sum(-1).mean(-1) * temps ** 2


# Cross-entropy on the true labels per network: ``logits (M, n, C)``, ``y (n,)`` or ``(M, n)`` -> ``(M,)``.
hard_ce = batched_cross_entropy

def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    yy = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    return (logits.argmax(-1) == yy).float().mean(-1)


@dataclass
class TrainResult:
    final: BatchedMLP          # the networks at the end of training
    best: BatchedMLP           # each network at its epoch of lowest validation cross-entropy
    best_epoch: np.ndarray     # (M,)
    converged: np.ndarray      # (M,) bool: the convergence criterion held at the end
    final_change: np.ndarray   # (M,) |objective(end) - objective(end - window)|
    curves: pd.DataFrame       # epoch, model, objective, train_ce, val_ce
    epochs_run: int            # epochs actually run (fewer than asked when all converged early)


def train_batched(model: BatchedMLP, x: torch.Tensor, targets: torch.Tensor, temps: torch.Tensor,
                  y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, epochs: int,
                  lr: float, weight_decay: float = 0.0, eval_every: int = 20,
                  conv_window: int = 500, conv_tol: float = 1e-3, desc: str = "",
                  stop_when_converged: bool = False) -> TrainResult:
    """Full-batch Adam on every network at once, keeping each network's best-validation state.

    ``x (M, n, d)``, ``targets (M, n, C)`` probabilities, ``temps (M,)``, ``y_train (M, n)``.
    Convergence criterion: the training objective moved by less than ``conv_tol`` (absolute)
    over the last ``conv_window`` epochs, or fell below ``conv_tol``. With
    ``stop_when_converged`` training ends at the first evaluation where every network meets it.
    """
    if conv_window % eval_every or epochs % eval_every:
        raise ValueError("epochs and conv_window must be multiples of eval_every")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best = model.select(range(model.n_models))
    best_val = torch.full((model.n_models,), float("inf"))
    best_epoch = torch.zeros(model.n_models, dtype=torch.long)
    rows, history = [], []
    M = model.n_models
    for epoch in progress(range(epochs + 1), desc=desc):
        if epoch % eval_every == 0:
            with torch.no_grad():
                obj = soft_cross_entropy(model(x), targets, temps)
                tr = hard_ce(model(x), y_train)
                va = hard_ce(model(x_val), y_val)
                better = va < best_val
                best_val = torch.where(better, va, best_val)
                best_epoch = torch.where(better, torch.tensor(epoch), best_epoch)
                for pb, p in zip(best.parameters(), model.parameters()):
                    pb.data[better] = p.data[better]
            history.append(obj.clone())
            rows.append(np.column_stack([np.full(M, epoch), np.arange(M), obj.numpy(),
                                         tr.numpy(), va.numpy()]))
            k = conv_window // eval_every
            if stop_when_converged and len(history) > k:
                done = ((history[-1] - history[-1 - k]).abs() < conv_tol) | (history[-1] < conv_tol)
                if bool(done.all()):
                    break
        if epoch == epochs:
            break
        opt.zero_grad(set_to_none=True)
        loss = soft_cross_entropy(model(x), targets, temps).sum()
        loss.backward()
        opt.step()
    k = conv_window // eval_every
    hist = torch.stack(history)
    change = (hist[-1] - hist[-1 - k]).abs() if len(hist) > k else torch.full((M,), float("inf"))
    converged = (change < conv_tol) | (hist[-1] < conv_tol)
    curves = pd.DataFrame(np.concatenate(rows), columns=["epoch", "model", "objective", "train_ce", "val_ce"])
    curves[["epoch", "model"]] = curves[["epoch", "model"]].astype(int)
    return TrainResult(model, best, best_epoch.numpy(), converged.numpy(), change.numpy(), curves,
                       int(epoch))


def train_teachers(split: DigitsSplit, idx: torch.Tensor, members: int, hidden: int, epochs: int,
                   lr: float, weight_decay: float, subset_seeds: list[int]) -> dict[str, torch.Tensor]:
    """An ensemble of ``members`` MLPs ``64-hidden-hidden-10`` per training subset, each
    early-stopped on the validation set. ``idx (S, n)`` indexes ``split.x_pool``; subset ``i``
    belongs to seed ``subset_seeds[i]`` (its members' initial weights derive from it).

    Returns the ensemble's logits, ``log(mean softmax)``, on each subset's own training points
    (``train (S, n, C)``), on the validation set (``val (S, n_val, C)``) and the test set
    (``test (S, n_test, C)``).
    """
    S, n = idx.shape
    rep = idx.repeat_interleave(members, dim=0)                      # (S*members, n)
    x = split.x_pool[rep]
    y = split.y_pool[rep]
    targets = torch.nn.functional.one_hot(y, 10).float()
    seeds = [seed_int("ch01", "teacher", n, s, k) for s in subset_seeds for k in range(members)]
    model = BatchedMLP(S * members, [64, hidden, hidden, 10], seeds=seeds)
    res = train_batched(model, x, targets, torch.ones(S * members), y, split.x_val, split.y_val,
                        epochs=epochs, lr=lr, weight_decay=weight_decay, eval_every=10,
                        conv_window=epochs, desc=f"teachers n={n}")

    def ens(xx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = torch.softmax(res.best(xx), -1).view(S, members, *xx.shape[-2:-1], 10).mean(1)
        return torch.log(p.clamp_min(1e-12))

    return {"train": ens(x), "val": ens(split.x_val), "test": ens(split.x_test)}


def run_condition_grid(split: DigitsSplit, n_train: int, widths: list[int], temps: list[float],
                       seeds: list[int], teacher: dict, epochs: int, lr: float,
                       conv_window: int, conv_tol: float, idx: torch.Tensor,
                       eval_every: int = 20, hard_max_epochs: int | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train students of each width on hard labels and on the teacher's soft labels at each
    temperature, all seeds batched. For a given seed and width every condition starts from the
    same initial weights. Distilled students train for ``epochs``; hard-label students train
    until every one of them meets the convergence criterion, or for ``hard_max_epochs``.

    Returns ``(metrics, curves)``: one metrics row per (width, seed, condition, checkpoint in
    {final, early_stopped}); curves every ``eval_every`` epochs.
    """
    hard_max_epochs = hard_max_epochs or epochs
    y_tr_s, x_tr_s = split.y_pool[idx], split.x_pool[idx]            # (S, n), (S, n, d)
    metrics, curves = [], []
    for width in widths:
        init_seeds = [seed_int("ch01", "student", n_train, width, s) for s in seeds]
        groups = [("hard", [1.0], hard_max_epochs, True), ("distill", [float(T) for T in temps], epochs, False)]
        for kind, Ts, budget, stop in groups:
            labels = [(kind, T, s) for T in Ts for s in seeds]
            if kind == "hard":
                targets = torch.nn.functional.one_hot(y_tr_s, 10).float()
            else:
                targets = torch.cat([torch.softmax(teacher["train"] / T, -1) for T in Ts])
            reps = len(Ts)
            x, y_all = x_tr_s.repeat(reps, 1, 1), y_tr_s.repeat(reps, 1)
            model = BatchedMLP(len(labels), [64, width, 10], seeds=init_seeds * reps)
            res = train_batched(model, x, targets, torch.tensor([t for (_, t, _) in labels]),
                                y_all, split.x_val, split.y_val, epochs=budget, lr=lr,
                                conv_window=conv_window, conv_tol=conv_tol, eval_every=eval_every,
                                desc=f"{kind} students n={n_train} h={width}", stop_when_converged=stop)
            teach_test, teach_tr = teacher["test"].repeat(reps, 1, 1), teacher["train"].repeat(reps, 1, 1)
            for ckpt, net in (("final", res.final), ("early_stopped", res.best)):
                with torch.no_grad():
                    z_tr, z_te = net(x), net(split.x_test)
                    m = {
                        "train_ce": hard_ce(z_tr, y_all), "val_ce": hard_ce(net(split.x_val), split.y_val),
                        "test_ce": hard_ce(z_te, split.y_test), "train_acc": accuracy(z_tr, y_all),
                        "test_acc": accuracy(z_te, split.y_test),
                        "agree_train": (z_tr.argmax(-1) == teach_tr.argmax(-1)).float().mean(-1),
                        "agree_test": (z_te.argmax(-1) == teach_test.argmax(-1)).float().mean(-1),
                    }
                for i, (_, T, s) in enumerate(labels):
                    row = {"n_train": n_train, "width": width, "seed": s, "condition": kind,
                           "temperature": T, "checkpoint": ckpt,
                           "epoch": int(res.best_epoch[i]) if ckpt == "early_stopped" else res.epochs_run,
                           "epochs_run": res.epochs_run, "converged": bool(res.converged[i]),
                           "final_change": float(res.final_change[i])}
                    row.update({k: float(v[i]) for k, v in m.items()})
                    metrics.append(row)
            c = res.curves
            c["n_train"], c["width"] = n_train, width
            c["condition"] = kind
            c["temperature"] = [labels[i][1] for i in c["model"]]
            c["seed"] = [labels[i][2] for i in c["model"]]
            curves.append(c.drop(columns="model"))
    return pd.DataFrame(metrics), pd.concat(curves, ignore_index=True)


def teacher_metrics(split: DigitsSplit, teacher: dict, idx: torch.Tensor, seeds: list[int],
                    n_train: int) -> pd.DataFrame:
    y_tr = split.y_pool[idx]
    with torch.no_grad():
        out = {"train_ce": hard_ce(teacher["train"], y_tr), "test_ce": hard_ce(teacher["test"], split.y_test),
               "test_acc": accuracy(teacher["test"], split.y_test)}
    return pd.DataFrame([{"n_train": n_train, "seed": s, **{k: float(v[i]) for k, v in out.items()}}
                         for i, s in enumerate(seeds)])


def run(train_sizes: list[int], widths: list[int], temperatures: list[float], seeds: list[int],
        student_epochs: int, hard_max_epochs: int, student_lr: float, eval_every: int,
        conv_window: int, conv_tol: float, teacher_members: int, teacher_hidden: int,
        teacher_epochs: int, teacher_lr: float, teacher_weight_decay: float
        ) -> dict[str, pd.DataFrame]:
    """The whole experiment: for every training size, the teachers and then every student.

    Returns the tidy tables ``metrics`` (one row per student and checkpoint), ``curves`` (every
    ``eval_every`` epochs), ``teachers`` (one row per training subset) and ``split`` (the sizes of
    the fixed split)."""
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
        teacher = train_teachers(split, idx, teacher_members, teacher_hidden, teacher_epochs,
                                 teacher_lr, teacher_weight_decay, subset_seeds=seeds)
        teachers.append(teacher_metrics(split, teacher, idx, seeds, n))
        m, c = run_condition_grid(split, n, widths, temperatures, seeds, teacher,
                                  epochs=student_epochs, lr=student_lr, conv_window=conv_window,
                                  conv_tol=conv_tol, idx=idx, eval_every=eval_every,
                                  hard_max_epochs=hard_max_epochs)
        metrics.append(m)
        curves.append(c)
    sizes = pd.DataFrame([{"part": "pool", "size": len(split.y_pool)},
                          {"part": "validation", "size": len(split.y_val)},
                          {"part": "test", "size": len(split.y_test)}])
    return {"metrics": pd.concat(metrics, ignore_index=True),
            "curves": pd.concat(curves, ignore_index=True),
            "teachers": pd.concat(teachers, ignore_index=True), "split": sizes}
