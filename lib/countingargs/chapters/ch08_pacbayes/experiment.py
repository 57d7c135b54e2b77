"""Chapter 08: PAC-Bayes certificates for stochastic MLPs on the digits, and the effect sizes of
other chapters read from their saved results.

**Certificates** (:func:`run`). For each task (``binary``: digits 0-4 against 5-9; ``ten``: the
10 classes), label kind (``true`` or ``random``), training-set size, width and seed:

1. a stratified training subset of the 1,297 digits outside the fixed test set is split at
   random into a *prior part* (``prior_fraction``) and a *bound part*;
2. a deterministic MLP ``64-w-w-C`` is trained on the prior part alone (full-batch Adam,
   cross-entropy, a fixed number of steps): its weights are the prior mean;
3. for each prior scale ``sigma_p`` of a grid, the posterior ``Q = N(mu, diag sigma^2)`` starts at
   the prior and is trained on the bound part by minimising the quadratic PAC-Bayes objective
   (:func:`.bounds.f_quad`) of the bounded cross-entropy, with the local reparameterisation
   trick (one independent weight draw per example and step);
4. the empirical risk of ``Q`` on the bound part is estimated twice, by two estimators kept
   apart: *per-example draws* (each example sees its own independent network, ``repeats``
   times: ``repeats * n_bound`` independent losses) for every grid point, and *shared draws*
   (``mc_draws`` whole networks, each scored on the whole bound part; the estimator of
   Langford and Caruana and of Pérez-Ortiz et al.) for the grid point whose per-example
   certificate is lowest;
5. on the test set (never used above): the test error and bounded cross-entropy of the
   stochastic classifier, and the test error of the posterior mean and of the prior mean.

Everything trains batched: one tensor per layer holds every seed and prior scale of one
(task, labels, size, width), and these batches run as the chunks of
:func:`countingargs.chunks.map_chunks` (in process, or on a Dask cluster), with the same results
wherever they run. The certificates themselves are computed from the saved columns in
``analysis.py`` (so ``verify`` recomputes them); the experiment computes the per-example ones
only to pick the prior scale.

**Other chapters** (:func:`external_effects`). The effect sizes the certificate is compared
with are read from chapter 01's and chapter 07's saved results, each row with the file it came
from and that file's sha256; a chapter whose results are absent gives one row saying so.
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...chunks import map_chunks
from ...data.digits import digits_split, stratified_subsets
from ...nets.losses import cross_entropy
from ...nets.mlp import BatchedMLP, forward
from ...nets.seeding import generator, seed_int
from ...nets.train import train_until
from ...stats import t_interval
from . import bounds

TASKS = {"binary": 2, "ten": 10}
LABELS = ("true", "random")
BASE = 8                      # first key of every seed of this chapter


# -- data ---------------------------------------------------------------------------------------
def task_data(task: str) -> dict:
    """The 1,297 digits outside the fixed test set (the training pool and the validation set of
    :func:`digits_split`, which this chapter does not need apart) and the 500 test digits, with
    the labels of ``task``; also a random relabelling of both (uniform classes, fixed seed)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {sorted(TASKS)}")
    split = digits_split()
    x = torch.cat([split.x_pool, split.x_val])
    y10 = torch.cat([split.y_pool, split.y_val])
    c = TASKS[task]
    lab = (lambda y: (y >= 5).long()) if task == "binary" else (lambda y: y)  # noqa: E731
    g = generator(BASE, "random-labels", task)
    return {"x": x, "y": lab(y10), "y_strata": y10, "x_test": split.x_test, "y_test": lab(split.y_test),
            "y_random": torch.randint(0, c, (len(y10),), generator=g),
            "y_test_random": torch.randint(0, c, (len(split.y_test),), generator=g), "n_classes": c}


# -- stochastic networks --------------------------------------------------------------------------
def _bounded_ce(logits: torch.Tensor, y: torch.Tensor, p_min: float) -> torch.Tensor:
    """Cross-entropy with the probability of the true class clamped below at ``p_min``, divided
    by ``ln(1/p_min)``: a loss in [0, 1]. ``logits (M, B, C)``, ``y (M, B)``; returns ``(M, B)``."""
    logp = torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return -logp.clamp(min=math.log(p_min)) / math.log(1 / p_min)


def _zero_one(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) != y).float()


def lrt_logits(mu: list[torch.Tensor], sigma: list[torch.Tensor], x: torch.Tensor,
               gen: torch.Generator) -> torch.Tensor:
    """Logits of the stochastic networks with an independent weight draw for every example
    (exact sampling of each layer's pre-activations given its input: the local
    reparameterisation trick). ``mu``, ``sigma``: ``[W (M, a, b), bias (M, 1, b), ...]``;
    ``x (M, B, a)``. Returns ``(M, B, C)``."""
    h = x
    n_layers = len(mu) // 2
    for i in range(n_layers):
        w_mu, b_mu, w_s, b_s = mu[2 * i], mu[2 * i + 1], sigma[2 * i], sigma[2 * i + 1]
        mean = torch.baddbmm(b_mu, h, w_mu)
        var = torch.baddbmm(b_s ** 2, h ** 2, w_s ** 2)
        h = mean + var.sqrt() * torch.randn(mean.shape, generator=gen)
        if i < n_layers - 1:
            h = torch.relu(h)
    return h


def _as_layers(flat: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]


def _sigma(rho: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.nn.functional.softplus(r) for r in rho]


def _kl(mu, sigma, prior_mu, prior_sigma) -> torch.Tensor:
    """``KL(Q || P)`` per network, all layers: ``prior_sigma (M,)``."""
    ps = prior_sigma.view(-1, 1, 1)
    return sum(bounds.gaussian_kl(m, s, pm, ps) for m, s, pm in zip(mu, sigma, prior_mu))


def _lrt_mean_loss(mu, sigma, x, y, repeats: int, gen, p_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-example-draw averages of the 0-1 loss and the bounded CE over ``repeats`` passes."""
    err = torch.zeros(x.shape[0], dtype=torch.float64)
    ce = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for _ in range(repeats):
            z = lrt_logits(mu, sigma, x, gen)
            err += _zero_one(z, y).double().mean(1)
            ce += _bounded_ce(z, y, p_min).double().mean(1)
    return (err / repeats).numpy(), (ce / repeats).numpy()


def shared_draw_loss(mu, sigma, x, y, draws: int, gen, p_min: float, chunk: int = 25
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Shared-draw averages of the 0-1 loss and the bounded CE: ``draws`` whole networks per
    stochastic network, each scored on all of ``x (M, B, a)``; returns ``(M,)`` each."""
    m = x.shape[0]
    err = torch.zeros(m, dtype=torch.float64)
    ce = torch.zeros(m, dtype=torch.float64)
    done = 0
    with torch.no_grad():
        while done < draws:
            k = min(chunk, draws - done)
            layers = []
            for mu_t, s_t in zip(mu, sigma):
                eps = torch.randn((m, k, *mu_t.shape[1:]), generator=gen)
                layers.append((mu_t.unsqueeze(1) + s_t.unsqueeze(1) * eps).reshape(m * k, *mu_t.shape[1:]))
            xx = x.unsqueeze(1).expand(m, k, *x.shape[1:]).reshape(m * k, *x.shape[1:])
            yy = y.unsqueeze(1).expand(m, k, y.shape[1]).reshape(m * k, -1)
            z = forward(_as_layers(layers), xx)
            err += _zero_one(z, yy).double().mean(1).view(m, k).sum(1)
            ce += _bounded_ce(z, yy, p_min).double().mean(1).view(m, k).sum(1)
            done += k
    return (err / draws).numpy(), (ce / draws).numpy()


def _test_errors(layers, x, y) -> np.ndarray:
    with torch.no_grad():
        return _zero_one(forward(layers, x), y.expand(layers[0][0].shape[0], -1)).mean(1).numpy()


# -- one batch: every seed and prior scale of one (task, labels, size, width) ----------------------
def certify_batch(task: str, labels: str, n_train: int, width: int, seeds: list[int], *,
                  prior_sigmas: list[float], prior_fraction: float, prior_steps: int, prior_lr: float,
                  post_steps: int, post_lr: float, p_min: float, p_min_train: float, delta: float, delta_mc: float,
                  repeats: int, test_repeats: int, mc_draws: int, data: dict | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and certify ``len(seeds) * len(prior_sigmas)`` stochastic networks; returns one
    row per posterior (``networks``) and one per prior (``priors``)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    if not 0 < prior_fraction < 1:
        raise ValueError(f"prior_fraction must lie in (0, 1), got {prior_fraction}")
    d = data if data is not None else task_data(task)
    c = d["n_classes"]
    y_all = d["y"] if labels == "true" else d["y_random"]
    y_test = d["y_test"] if labels == "true" else d["y_test_random"]
    idx = stratified_subsets(d["y_strata"], n_train, [seed_int(BASE, "subset", task, n_train, s) for s in seeds])
    n_prior = int(round(prior_fraction * n_train))
    n_bound = n_train - n_prior
    if n_prior < 1 or n_bound < 8:
        raise ValueError(f"n_train={n_train} with prior_fraction={prior_fraction} leaves {n_prior} prior and "
                         f"{n_bound} bound examples (need >= 1 and >= 8)")
    xp, yp = d["x"][idx[:, :n_prior]], y_all[idx[:, :n_prior]]
    xb, yb = d["x"][idx[:, n_prior:]], y_all[idx[:, n_prior:]]
    sizes = [d["x"].shape[1], width, width, c]

    # the prior means: deterministic networks trained on the prior part only
    net = BatchedMLP(len(seeds), sizes, seeds=[seed_int(BASE, "init", task, labels, n_train, width, s) for s in seeds])
    start = [p.detach() for pair in net.layers() for p in pair]
    prior = train_until(start, lambda p, ids, t: cross_entropy(forward(_as_layers(p), xp[ids]), yp[ids], fast=True),
                        lr=prior_lr, max_steps=prior_steps).params
    prior_layers = _as_layers(prior)
    with torch.no_grad():
        prior_train_err = _zero_one(forward(prior_layers, xp), yp).mean(1).numpy()
        prior_bound_err = _zero_one(forward(prior_layers, xb), yb).mean(1).numpy()
    prior_test_err = _test_errors(prior_layers, d["x_test"], y_test)

    # the posteriors: every seed x prior scale, starting at the prior
    k = len(prior_sigmas)
    rep = torch.arange(len(seeds)).repeat_interleave(k)
    prior_mu = [p[rep] for p in prior]
    psig = torch.tensor([float(s) for s in prior_sigmas] * len(seeds))
    xb_m, yb_m = xb[rep], yb[rep]
    rho0 = [torch.full_like(p, 0.0) + torch.log(torch.expm1(psig)).view(-1, 1, 1) for p in prior_mu]
    gen = generator(BASE, "posterior", task, labels, n_train, width)
    n_layer_params = len(prior_mu)

    def objective(params, ids, step):
        mu, sigma = params[:n_layer_params], _sigma(params[n_layer_params:])
        z = lrt_logits(mu, sigma, xb_m[ids], gen)
        risk = _bounded_ce(z, yb_m[ids], p_min_train).mean(1)
        kl = _kl(mu, sigma, [p[ids] for p in prior_mu], psig[ids])
        return bounds.f_quad(risk, kl, n_bound, delta)

    post = train_until(prior_mu + rho0, objective, lr=post_lr, max_steps=post_steps).params
    mu, sigma = post[:n_layer_params], _sigma(post[n_layer_params:])
    with torch.no_grad():
        kl = _kl(mu, sigma, prior_mu, psig).double().numpy()
    g_cert = generator(BASE, "certificate", task, labels, n_train, width)
    b_err, b_ce = _lrt_mean_loss(mu, sigma, xb_m, yb_m, repeats, g_cert, p_min)
    xt = d["x_test"].unsqueeze(0).expand(len(rep), -1, -1)
    yt = y_test.unsqueeze(0).expand(len(rep), -1)
    t_err, t_ce = _lrt_mean_loss(mu, sigma, xt, yt, test_repeats, generator(BASE, "test", task, labels, n_train, width),
                                 p_min)
    mean_err = _test_errors(_as_layers(mu), d["x_test"], y_test)

    # pick the prior scale with the lowest per-example certificate (the union bound pays for it)
    cert = bounds.certificate(b_err, repeats * n_bound, kl, n_bound, delta, delta_mc, k)
    pick = cert.reshape(len(seeds), k).argmin(1) + np.arange(len(seeds)) * k
    sel = torch.as_tensor(pick)
    d_err, d_ce = shared_draw_loss([m_[sel] for m_ in mu], [s_[sel] for s_ in sigma], xb_m[sel], yb_m[sel],
                                   mc_draws, generator(BASE, "draws", task, labels, n_train, width), p_min)
    n_params = sum(p[0].numel() for p in prior)
    rows = []
    for i in range(len(rep)):
        s_i = int(rep[i])
        chosen = i in set(pick.tolist())
        j = int(np.flatnonzero(pick == i)[0]) if chosen else -1
        rows.append({"task": task, "labels": labels, "n_train": n_train, "width": width, "seed": seeds[s_i],
                     "sigma_prior": float(psig[i]), "n_priors": k, "n_prior": n_prior, "n_bound": n_bound,
                     "n_params": n_params, "kl": float(kl[i]), "sigma_mean": float(torch.cat(
                         [s_[i].reshape(-1) for s_ in sigma]).mean()),
                     "bound_err": float(b_err[i]), "bound_ce": float(b_ce[i]), "repeats": repeats,
                     "selected": chosen, "draws": mc_draws if chosen else 0,
                     "bound_err_draws": float(d_err[j]) if chosen else math.nan,
                     "bound_ce_draws": float(d_ce[j]) if chosen else math.nan,
                     "test_err": float(t_err[i]), "test_ce": float(t_ce[i]), "test_repeats": test_repeats,
                     "test_err_mean": float(mean_err[i]), "n_test": int(len(y_test))})
    priors = pd.DataFrame({"task": task, "labels": labels, "n_train": n_train, "width": width, "seed": seeds,
                           "n_prior": n_prior, "prior_train_err": prior_train_err,
                           "prior_bound_err": prior_bound_err, "prior_test_err": prior_test_err})
    return pd.DataFrame(rows), priors


@functools.lru_cache(maxsize=None)
def _task_data(task: str) -> dict:
    """:func:`task_data`, built once per process (a chunk rebuilds it rather than receiving it;
    nothing here modifies it)."""
    return task_data(task)


def certify_chunk(seed: int, chunk: int, batches: list[list], seeds: list[int], **settings
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk of :func:`run`: :func:`certify_batch` for each ``[task, labels, n_train, width]``
    of ``batches``, in order, every one with all of ``seeds``; the two tables concatenated.

    ``seed`` is the chapter's base key (:data:`BASE`) and ``chunk`` the chunk's index, both for
    the chunk runner's reports: every random stream of a batch is keyed by the batch's own
    (task, labels, n_train, width) and seeds, so a batch gives the same networks whichever
    chunk, worker or process runs it. ``settings``: the keyword arguments of
    :func:`certify_batch` (plain numbers and lists)."""
    if seed != BASE:
        raise ValueError(f"chapter 08's chunks carry the base key {BASE} as their seed, got {seed}")
    nets, priors = [], []
    for t, lab, n, w in batches:
        a, b = certify_batch(t, lab, int(n), int(w), [int(s) for s in seeds], data=_task_data(t), **settings)
        nets.append(a)
        priors.append(b)
    return pd.concat(nets, ignore_index=True), pd.concat(priors, ignore_index=True)


def run(tasks: list[str], train_sizes: list[int], widths: list[int], seeds: list[int], *,
        control: bool = True, batches_per_chunk: int = 1, scheduler: str | None = None,
        **settings) -> dict[str, pd.DataFrame]:
    """Every (task, size, width) with true labels, and the random-label control at the largest
    size and the widest width. Returns the tables ``networks`` and ``priors``.

    The batches (one (task, labels, size, width) each, every seed and prior scale in one tensor)
    run as chunks of :func:`countingargs.chunks.map_chunks` (:func:`certify_chunk`),
    ``batches_per_chunk`` consecutive batches per chunk, on ``scheduler`` (``None``: the
    environment's ``COUNTINGARGS_SCHEDULER``; ``""`` in process); the tables are the same,
    byte for byte, for every chunk layout and number of workers (on CPU)."""
    if not seeds or not train_sizes or not widths or not tasks:
        raise ValueError("need at least one task, size, width and seed")
    if batches_per_chunk < 1:
        raise ValueError(f"batches_per_chunk must be >= 1, got {batches_per_chunk}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; valid: {sorted(TASKS)}")
    jobs = [[t, "true", int(n), int(w)] for t in tasks for n in train_sizes for w in widths]
    if control:
        jobs += [[t, "random", int(max(train_sizes)), int(max(widths))] for t in tasks]
    settings = {k: ([float(x) for x in v] if k == "prior_sigmas" else v) for k, v in settings.items()}
    chunks = [dict(seed=BASE, chunk=i, batches=jobs[j:j + batches_per_chunk], seeds=[int(s) for s in seeds],
                   **settings)
              for i, j in enumerate(range(0, len(jobs), batches_per_chunk))]
    res = map_chunks(certify_chunk, chunks, name="08-certificates", scheduler=scheduler)
    return {"networks": pd.concat([r[0] for r in res.results], ignore_index=True),
            "priors": pd.concat([r[1] for r in res.results], ignore_index=True)}


# -- the other chapters' results -------------------------------------------------------------------
#: family -> (chapter, notebook pattern, file, what is compared)
SOURCES = {
    "01-accuracy": ("01", "01_distillation", "metrics.csv",
                    "test accuracy, distilled − early-stopped hard-label student (chapter 01, version H in accuracy)"),
    "01-nats": ("01", "01_distillation", "cells.csv",
                "held-out CE, hard-label − distilled student (chapter 01, versions H and M)"),
    "07-nats": ("07", "07_*", "ledger.csv", "chapter 07's ledger effects in nats"),
}
EFFECT_COLUMNS = ["family", "chapter", "file", "sha256", "status", "quantity", "cell", "units", "effect", "lo",
                  "hi", "n_seeds"]


def find_book_root(start: Path | None = None) -> Path | None:
    """The book root at or above ``start`` (a folder with ``_config.yml`` and ``notebooks/``; the
    runner executes a notebook in ``<root>/.rebuild-tmp/``), or ``None``. Written here rather than
    imported from the build package, so that runner changes do not rerun this chapter."""
    here = Path(start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "_config.yml").is_file() and (d / "notebooks").is_dir()),
                None)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _accuracy_cells(metrics: pd.DataFrame) -> list[dict]:
    """Chapter 01's test-accuracy differences per (n_train, width): the distilled student at the
    temperature of lowest mean validation CE (chapter 01's rule) minus the early-stopped
    hard-label student of the same seed; mean over seeds with a 95% t-interval."""
    fin = metrics[(metrics.condition == "distill") & (metrics.checkpoint == "final")]
    temp = (fin.groupby(["n_train", "width", "temperature"]).val_ce.mean().reset_index()
            .sort_values(["val_ce", "temperature"], kind="stable").groupby(["n_train", "width"]).head(1))
    dist = fin.merge(temp[["n_train", "width", "temperature"]], on=["n_train", "width", "temperature"])
    hard = metrics[(metrics.condition == "hard") & (metrics.checkpoint == "early_stopped")]
    both = dist.merge(hard, on=["n_train", "width", "seed"], suffixes=("_d", "_h"))
    rows = []
    for (n, w), g in both.groupby(["n_train", "width"]):
        diff = (g.test_acc_d - g.test_acc_h).to_numpy(dtype=float)
        est, lo, hi = t_interval(diff) if len(diff) >= 2 else (math.nan,) * 3
        rows.append({"cell": f"n_train={int(n)}, width={int(w)}", "effect": est, "lo": lo, "hi": hi,
                     "n_seeds": len(diff), "units": "accuracy"})
    return rows


def _nats_cells(cells: pd.DataFrame) -> list[dict]:
    sub = cells[cells.version.isin(["H", "M"])]
    return [{"cell": f"version {r.version}, n_train={int(r.n_train)}, width={int(r.width)}", "effect": r.diff,
             "lo": r.lo, "hi": r.hi, "n_seeds": int(r.n_seeds), "units": "nats"} for r in sub.itertuples()]


def _ledger_rows(ledger: pd.DataFrame) -> list[dict]:
    return [{"cell": f"{r.id} ({r.version})", "effect": r.effect, "lo": r.effect_lo, "hi": r.effect_hi,
             "n_seeds": math.nan, "units": str(r.units)} for r in ledger.itertuples()]


READERS = {"01-accuracy": _accuracy_cells, "01-nats": _nats_cells, "07-nats": _ledger_rows}


def external_effects(results_root: Path | None, profile: str) -> pd.DataFrame:
    """One row per effect size read from another chapter's saved results (see :data:`SOURCES`),
    with the file (relative to the book root) and its sha256; a source that is absent or cannot
    be read gives one row with ``status`` saying so and no values."""
    rows = []
    for family, (chapter, pattern, fname, what) in SOURCES.items():
        base = {"family": family, "chapter": chapter, "quantity": what}
        folders = sorted(p for p in (Path(results_root) / "results" / profile).glob(pattern)
                         if (p / fname).is_file()) if results_root is not None else []
        rel = f"results/{profile}/{pattern}/{fname}"
        if not folders:
            rows.append({**base, "file": rel, "sha256": "", "status": "absent"})
            continue
        path = folders[0] / fname
        rel = path.relative_to(results_root).as_posix()
        try:
            found = READERS[family](pd.read_csv(path, keep_default_na=False, na_values=[""]))
        except (KeyError, AttributeError, ValueError) as exc:
            rows.append({**base, "file": rel, "sha256": _sha256(path), "status": f"unreadable: {exc}"})
            continue
        if not found:
            rows.append({**base, "file": rel, "sha256": _sha256(path), "status": "no rows"})
        for r in found:
            rows.append({**base, "file": rel, "sha256": _sha256(path), "status": "present", **r})
    out = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    return out.sort_values(["family", "status", "cell"], kind="stable", na_position="first", ignore_index=True)
