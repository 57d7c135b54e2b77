"""The reversal curse at toy scale: synthetic facts, a batched decoder-only transformer, and
rank-based evaluation (chapter 5).

Data (:func:`make_facts`, :func:`make_corpus`)
    *Curse facts* pair a two-token **name** ``(first, last)`` with a two-token **description**
    ``(d1, d2)``. They fall into three disjoint groups, as in Berglund et al. (2023):
    ``p2d`` facts are trained only as ``name  tpl  description``, ``d2p`` facts only as
    ``description  tpl  name``, and ``both`` facts in both orders. ``tpl`` is one of ``K``
    one-token templates ("is", "was", ...), shared by both orders, so a reversed question is
    always in a format the model has seen many times -- only the particular fact is missing.

    *Two-hop facts* form chains ``person -R1-> city -R2-> country``. Every hop is trained. The
    composed relation ``person -R12-> country`` is trained for some persons of most cities
    ("composition-trained") and held out for the others; in ``unseen_cities_per_country`` cities
    of every country it is held out for all persons, so those cities never occur as the bridge
    of a trained composition. The design is balanced (every country has the same number of
    cities of each kind, every city the same number of persons), so the base rate of countries
    carries no information and chance rank is exactly the middle.

Model (:class:`countingargs.nets.transformer.BatchedTransformer`)
    ``M`` independent GPT-style transformers held as stacked tensors; each model gets its own
    seed, its own facts and its own minibatch order (see :mod:`countingargs.nets.transformer`).

Evaluation (:func:`score_candidates`, :func:`greedy_answers`, :func:`evaluate`)
    For a prompt, every candidate answer is scored by the summed log-probability of its tokens.
    We report greedy exact-match accuracy and the *normalised rank* of the correct answer among
    the candidates: ``(rank - 1) / (C - 1)``, with ties counted at their mean position, so 0 is
    the top, 1 the bottom and 0.5 chance.

One call (:func:`run_experiment`) draws the facts, trains all seeds as one batch, evaluates and
returns tidy tables; the verdicts are computed from those tables by :mod:`.analysis`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ...nets import seeding
from ...nets.transformer import (BOS, PAD, BatchedTransformer, TrainConfig, greedy_answers,
                                 score_candidates, train_lm)

GROUPS = ("p2d", "d2p", "both")
SEQ_LEN = 6  # BOS + 2 + 1 + 2 for curse sentences; two-hop sentences are padded to this


# ------------------------------------------------------------------------------------------
# Vocabulary and facts
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocab:
    """Token id ranges. Each pool is a ``range`` of token ids."""

    n_templates: int
    name_pool: int
    desc_pool: int
    n_cities: int
    n_countries: int

    def _start(self, which: str) -> int:
        order = [("special", 2), ("tpl", self.n_templates), ("rel", 3),
                 ("first", self.name_pool), ("last", self.name_pool),
                 ("d1", self.desc_pool), ("d2", self.desc_pool),
                 ("city", self.n_cities), ("country", self.n_countries)]
        pos = 0
        for name, size in order:
            if name == which:
                return pos
            pos += size
        if which == "end":
            return pos
        raise KeyError(which)

    def pool(self, which: str) -> range:
        sizes = {"tpl": self.n_templates, "rel": 3, "first": self.name_pool, "last": self.name_pool,
                 "d1": self.desc_pool, "d2": self.desc_pool, "city": self.n_cities,
                 "country": self.n_countries}
        s = self._start(which)
        return range(s, s + sizes[which])

    @property
    def size(self) -> int:
        return self._start("end")

    @property
    def R1(self) -> int:
        return self.pool("rel")[0]

    @property
    def R2(self) -> int:
        return self.pool("rel")[1]

    @property
    def R12(self) -> int:
        return self.pool("rel")[2]


@dataclass
class Facts:
    """One seed's facts (numpy int64 token ids).

    names: ``(N, 2)`` curse names; descs: ``(N, 2)`` curse descriptions; group: ``(N,)`` in
    ``0..2`` (index into :data:`GROUPS`), ``N = 3 * n_per_group``, ordered by group.
    persons: ``(P, 2)`` two-hop person names (disjoint from ``names``); city: ``(P,)`` token of
    each person's city; country_of_city: ``(n_cities,)`` country token of each city (indexed by
    ``city_token - vocab.pool('city')[0]``); composed_trained: ``(P,)`` bool;
    bridge_seen: ``(P,)`` bool, whether the person's city is the bridge of some trained
    composition.
    """

    vocab: Vocab
    names: np.ndarray
    descs: np.ndarray
    group: np.ndarray
    persons: np.ndarray
    city: np.ndarray
    country_of_city: np.ndarray
    composed_trained: np.ndarray
    bridge_seen: np.ndarray

    def country(self) -> np.ndarray:
        """``(P,)`` country token of each person."""
        return self.country_of_city[self.city - self.vocab.pool("city")[0]]


def default_pool(n_entities: int) -> int:
    """Smallest token pool ``k`` with ``k*k >= 2 * n_entities`` (so two-token entities are drawn
    without replacement from at most half of the possible pairs)."""
    return max(4, math.ceil(math.sqrt(2 * n_entities)))


def make_vocab(n_per_group: int, n_templates: int, n_countries: int, cities_per_country: int,
               persons_per_city: int) -> Vocab:
    n_names = 3 * n_per_group + n_countries * cities_per_country * persons_per_city
    return Vocab(n_templates=n_templates, name_pool=default_pool(n_names),
                 desc_pool=default_pool(3 * n_per_group), n_cities=n_countries * cities_per_country,
                 n_countries=n_countries)


def _pairs(rng: np.random.Generator, pool: range, n: int) -> np.ndarray:
    """``n`` distinct ordered pairs of tokens from ``pool``: ``(n, 2)``."""
    k = len(pool)
    if n > k * k:
        raise ValueError(f"cannot draw {n} distinct pairs from a pool of {k} tokens")
    flat = rng.choice(k * k, size=n, replace=False)
    return np.stack([flat // k, flat % k], axis=1) + pool[0]


def make_facts(seed: int, n_per_group: int = 100, n_templates: int = 4, n_countries: int = 10,
               cities_per_country: int = 4, persons_per_city: int = 5,
               composed_per_city: int = 3, unseen_cities_per_country: int = 1) -> Facts:
    """Draw one seed's facts. The three curse groups are disjoint by construction (each entity
    is used once); two-hop persons are disjoint from curse names."""
    for name, v, lo in [("n_per_group", n_per_group, 1), ("n_templates", n_templates, 1),
                        ("n_countries", n_countries, 2), ("cities_per_country", cities_per_country, 1),
                        ("persons_per_city", persons_per_city, 2)]:
        if int(v) < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
    if not 1 <= composed_per_city < persons_per_city:
        raise ValueError(f"composed_per_city must lie in [1, persons_per_city - 1] = "
                         f"[1, {persons_per_city - 1}], got {composed_per_city}")
    if not 0 <= unseen_cities_per_country < cities_per_country:
        raise ValueError(f"unseen_cities_per_country must lie in [0, cities_per_country - 1] = "
                         f"[0, {cities_per_country - 1}], got {unseen_cities_per_country}")
    vocab = make_vocab(n_per_group, n_templates, n_countries, cities_per_country, persons_per_city)
    rng = seeding.rng("ch05", "facts", int(seed))
    n = 3 * n_per_group
    n_cities = n_countries * cities_per_country
    n_persons = n_cities * persons_per_city
    # names and persons from one draw so they can never coincide
    everyone = _pairs(rng, vocab.pool("first"), n + n_persons)
    everyone[:, 1] += len(vocab.pool("first"))  # second token from the "last" pool
    names, persons = everyone[:n], everyone[n:]
    descs = _pairs(rng, vocab.pool("d1"), n)
    descs[:, 1] += len(vocab.pool("d1"))
    group = np.repeat(np.arange(3), n_per_group)
    # balanced chains: the k-th city of each country is "unseen" for k < unseen_cities_per_country;
    # cities are then given shuffled token labels
    country_idx = np.repeat(np.arange(n_countries), cities_per_country)
    seen_city = np.tile(np.arange(cities_per_country) >= unseen_cities_per_country, n_countries)
    order = rng.permutation(n_cities)  # token slot -> (country, kind) row
    country_of_city = country_idx[order] + vocab.pool("country")[0]
    seen_city = seen_city[order]
    city = np.repeat(np.arange(n_cities), persons_per_city) + vocab.pool("city")[0]
    composed = np.zeros(n_persons, dtype=bool)
    for c in range(n_cities):  # which persons of a seen city are composition-trained
        if seen_city[c]:
            pick = rng.permutation(persons_per_city)[:composed_per_city]
            composed[c * persons_per_city + pick] = True
    bridge_seen = np.repeat(seen_city, persons_per_city)
    return Facts(vocab, names.astype(np.int64), descs.astype(np.int64), group.astype(np.int64),
                 persons.astype(np.int64), city.astype(np.int64), country_of_city.astype(np.int64),
                 composed, bridge_seen)


def _pad(rows: list[list[int]]) -> np.ndarray:
    out = np.full((len(rows), SEQ_LEN), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def make_corpus(facts: Facts, twohop_repeats: int | None = None) -> np.ndarray:
    """Training sequences ``(S, SEQ_LEN)`` for one seed (BOS first, PAD at the end).

    Curse facts appear once per template (``p2d``/``d2p``: K sentences, ``both``: 2K).
    Two-hop sentences (``person R1 city``, ``city R2 country`` once per person of the city,
    ``person R12 country`` for composition-trained persons) are repeated ``twohop_repeats``
    times (default K) so that each fact is seen about as often as a curse fact.
    """
    v = facts.vocab
    K = v.n_templates
    reps = K if twohop_repeats is None else int(twohop_repeats)
    rows: list[list[int]] = []
    for nm, ds, g in zip(facts.names.tolist(), facts.descs.tolist(), facts.group.tolist()):
        for t in v.pool("tpl"):
            if g in (0, 2):
                rows.append([BOS, *nm, t, *ds])
            if g in (1, 2):
                rows.append([BOS, *ds, t, *nm])
    country = facts.country()
    for _ in range(reps):
        for p, c, y, comp in zip(facts.persons.tolist(), facts.city.tolist(), country.tolist(),
                                 facts.composed_trained.tolist()):
            rows.append([BOS, *p, v.R1, c])
            rows.append([BOS, c, v.R2, y])
            if comp:
                rows.append([BOS, *p, v.R12, y])
    return _pad(rows)


# ------------------------------------------------------------------------------------------
# Queries
# ------------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    """Prompts with candidate answers, stacked over seeds.

    prompts: ``(M, Q, Tp)``; candidates: ``(M, Q, C, La)``; correct: ``(M, Q)`` index of the
    right candidate; meta: one row per query (shared by all seeds) with the columns that
    describe it (experiment, group, direction, template, ...).
    """

    prompts: torch.Tensor
    candidates: torch.Tensor
    correct: torch.Tensor
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    person_kind: torch.Tensor | None = None  # (M, Q) in {0, 1, 2}, two-hop queries only


def curse_queries(facts: Facts, group: int, direction: str, n_items: int | None = None,
                  templates: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries for one group in one direction (``"p2d"``: name tpl -> description;
    ``"d2p"``: description tpl -> name), one per fact and template (template-major order).
    Candidates are the answers of the same group's facts (so every candidate has the same
    training history). ``n_items``: use only the group's first facts (then only they are
    candidates); ``templates``: template indices to use (default all).
    Returns prompts ``(Q, 4)``, candidates ``(Q, C, 2)``, correct ``(Q,)``."""
    if direction not in ("p2d", "d2p"):
        raise ValueError(f"direction must be 'p2d' or 'd2p', got {direction!r}")
    idx = np.flatnonzero(facts.group == group)[:n_items]
    src, dst = (facts.names, facts.descs) if direction == "p2d" else (facts.descs, facts.names)
    pool = list(facts.vocab.pool("tpl"))
    tpls = pool if templates is None else [pool[t] for t in templates]
    prompts, correct = [], []
    for t in tpls:
        for j, i in enumerate(idx):
            prompts.append([BOS, *src[i], t])
            correct.append(j)
    prompts = np.array(prompts, dtype=np.int64)
    cands = np.broadcast_to(dst[idx], (len(prompts), len(idx), 2)).copy()
    return prompts, cands, np.array(correct, dtype=np.int64)


def twohop_queries(facts: Facts, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-hop queries: ``"hop1"`` (person R1 -> city, all cities are candidates), ``"hop2"``
    (city R2 -> country, one query per person so the split matches), ``"composed"`` (person
    R12 -> country, all countries are candidates). Returns prompts ``(P, Tp)``, candidates
    ``(P, C, 1)``, correct ``(P,)`` and the person kind ``(P,)``: 0 composition-trained,
    1 held out with a seen bridge city, 2 held out with an unseen bridge city."""
    v = facts.vocab
    cities = np.array(list(v.pool("city")))
    countries = np.array(list(v.pool("country")))
    country = facts.country()
    P = len(facts.persons)
    if which == "hop1":
        prompts = np.column_stack([np.full(P, BOS), facts.persons, np.full(P, v.R1)])
        cands, answer = cities, facts.city
    elif which == "hop2":
        prompts = np.column_stack([np.full(P, BOS), facts.city, np.full(P, v.R2)])
        cands, answer = countries, country
    elif which == "composed":
        prompts = np.column_stack([np.full(P, BOS), facts.persons, np.full(P, v.R12)])
        cands, answer = countries, country
    else:
        raise ValueError(f"which must be 'hop1', 'hop2' or 'composed', got {which!r}")
    correct = np.searchsorted(cands, answer)
    c = np.broadcast_to(cands[None, :, None], (P, len(cands), 1)).copy()
    kind = np.where(facts.composed_trained, 0, np.where(facts.bridge_seen, 1, 2))
    return prompts.astype(np.int64), c.astype(np.int64), correct.astype(np.int64), kind.astype(np.int64)


def build_queries(facts_list: Sequence[Facts], n_items: int | None = None,
                  templates: Sequence[int] | None = None, twohop: bool = True) -> list[QuerySet]:
    """All query sets of the chapter, stacked over seeds (one :class:`QuerySet` per prompt
    shape): curse queries for each group x direction, then (if ``twohop``) two-hop hop1 / hop2 /
    composed. ``n_items`` / ``templates`` restrict the curse queries (see :func:`curse_queries`)."""
    if not facts_list:
        raise ValueError("build_queries needs the facts of at least one seed")
    out = []
    tpl_idx = list(range(facts_list[0].vocab.n_templates)) if templates is None else list(templates)
    for g, gname in enumerate(GROUPS):
        for direction in ("p2d", "d2p"):
            parts = [curse_queries(f, g, direction, n_items, tpl_idx) for f in facts_list]
            trained = (direction == gname) or gname == "both"
            n_t = len(tpl_idx)
            Q = parts[0][0].shape[0]
            meta = pd.DataFrame({
                "experiment": "curse", "group": gname, "direction": direction,
                "trained_direction": trained,
                "template": np.repeat(tpl_idx, Q // n_t),
                "item": np.tile(np.arange(Q // n_t), n_t)})
            out.append(QuerySet(*(torch.from_numpy(np.stack(p)) for p in zip(*parts)), meta=meta))
    for which in (("hop1", "hop2", "composed") if twohop else ()):
        parts = [twohop_queries(f, which) for f in facts_list]
        P = len(parts[0][3])
        # which persons are held out differs by seed: kept per seed, not in meta
        meta = pd.DataFrame({"experiment": "twohop", "group": which, "direction": which,
                             "trained_direction": True, "template": 0, "item": np.arange(P)})
        prompts, cands, correct, comp = (torch.from_numpy(np.stack(p)) for p in zip(*parts))
        out.append(QuerySet(prompts, cands, correct, meta=meta, person_kind=comp))
    return out


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
def normalised_rank(scores: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """``(rank - 1) / (C - 1)`` of the correct candidate, ties at their mean position.
    scores ``(..., C)``, correct ``(...)`` -> ``(...)`` in [0, 1]; 0 = top, 0.5 = chance."""
    C = scores.shape[-1]
    if C < 2:
        raise ValueError("need at least two candidates to rank")
    s = scores.gather(-1, correct.unsqueeze(-1))
    above = (scores > s).sum(-1).float()
    ties = (scores == s).sum(-1).float() - 1
    return (above + ties / 2) / (C - 1)


@torch.no_grad()
def evaluate(logits_fn: Callable[[torch.Tensor], torch.Tensor], queries: Sequence[QuerySet],
             seeds: Sequence[int]) -> pd.DataFrame:
    """Score every query of every seed: one row per (seed, query) with ``accuracy`` (greedy
    exact match over the whole vocabulary), ``top1`` (the correct candidate scores highest),
    ``rank`` (normalised, 0.5 = chance), ``n_candidates`` and the query's meta columns."""
    rows = []
    for qs in queries:
        M, Q = qs.correct.shape
        scores = score_candidates(logits_fn, qs.prompts, qs.candidates)
        rank = normalised_rank(scores, qs.correct)
        top1 = (scores.argmax(-1) == qs.correct)
        La = qs.candidates.shape[-1]
        answer = qs.candidates.gather(2, qs.correct.view(M, Q, 1, 1).expand(M, Q, 1, La)).squeeze(2)
        greedy = greedy_answers(logits_fn, qs.prompts, La)
        acc = (greedy == answer).all(-1)
        for i, s in enumerate(seeds):
            df = qs.meta.copy()
            df.insert(0, "seed", int(s))
            if qs.person_kind is not None:
                df["person_kind"] = qs.person_kind[i].numpy()
            df["accuracy"] = acc[i].float().numpy()
            df["top1"] = top1[i].float().numpy()
            df["rank"] = rank[i].numpy()
            df["n_candidates"] = qs.candidates.shape[2]
            rows.append(df)
    return pd.concat(rows, ignore_index=True)


PERSON_KINDS = ("trained", "heldout-seen-city", "heldout-unseen-city")


def condition_of(experiment: str, group: str, direction: str, person_kind: int) -> str:
    """The condition name used in the summary table."""
    if experiment == "curse":
        if group == "both":
            return f"both/{'forward' if direction == 'p2d' else 'backward'}"
        return f"{group}/{'same' if group == direction else 'reversed'}"
    return f"twohop/{group}-{PERSON_KINDS[int(person_kind)]}"


def summarise(per_query: pd.DataFrame) -> pd.DataFrame:
    """Per seed x condition means of accuracy, top-1 and rank, plus the chance levels.
    Conditions: ``p2d/same``, ``p2d/reversed``, ``d2p/same``, ``d2p/reversed``,
    ``both/forward``, ``both/backward`` and ``twohop/{hop1,hop2,composed}-<kind>`` for the
    person kinds in :data:`PERSON_KINDS`."""
    df = per_query.copy()
    ct = df["person_kind"] if "person_kind" in df else pd.Series(0, index=df.index)
    ct = ct.fillna(0).astype(int)
    df["condition"] = [condition_of(e, g, d, c) for e, g, d, c in
                       zip(df["experiment"], df["group"], df["direction"], ct)]
    out = (df.groupby(["seed", "condition"], sort=True)
           .agg(accuracy=("accuracy", "mean"), top1=("top1", "mean"), rank=("rank", "mean"),
                n_queries=("rank", "size"), n_candidates=("n_candidates", "first"))
           .reset_index())
    out["chance_top1"] = 1.0 / out["n_candidates"]
    out["rank_lift"] = 0.5 - out["rank"]
    return out


# ------------------------------------------------------------------------------------------
# One call for the notebook
# ------------------------------------------------------------------------------------------
def run_experiment(seeds: Sequence[int], n_per_group: int = 100, n_templates: int = 4,
                   n_countries: int = 10, cities_per_country: int = 4, persons_per_city: int = 5,
                   composed_per_city: int = 3, unseen_cities_per_country: int = 1,
                   d_model: int = 64, n_layers: int = 2,
                   n_heads: int = 4, cfg: TrainConfig | None = None,
                   progress: Callable | None = None, checkpoint_every: int = 0,
                   checkpoint_items: int = 25) -> dict:
    """Draw facts for each seed, train one model per seed (all in one batch), evaluate.

    With ``checkpoint_every > 0`` the models are also scored at initialisation and during
    training (every ``checkpoint_every`` steps and at the end) on a small query
    set (the first ``checkpoint_items`` facts of each group, template 0, plus all two-hop
    queries). Returns a dict with ``facts``, ``model``, ``log`` (training loss), ``per_query``,
    ``summary`` (see :func:`summarise`), ``curve`` (the checkpoint summaries, with ``step``) and
    ``design`` (one row per seed: the sizes of its facts, corpus and model).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    cfg = cfg or TrainConfig()
    facts = [make_facts(s, n_per_group, n_templates, n_countries, cities_per_country,
                        persons_per_city, composed_per_city, unseen_cities_per_country)
             for s in seeds]
    corpus = torch.from_numpy(np.stack([make_corpus(f) for f in facts]))
    model = BatchedTransformer(len(seeds), facts[0].vocab.size, d_model, n_layers, n_heads,
                               seq_len=SEQ_LEN, seeds=[seeding.seed_int("ch05", "init", s) for s in seeds])
    curve = []
    small = build_queries(facts, n_items=checkpoint_items, templates=[0]) if checkpoint_every else []

    def checkpoint(step: int) -> None:
        df = summarise(evaluate(model, small, seeds))
        df.insert(0, "step", step)
        curve.append(df)

    if checkpoint_every:
        model.eval()
        checkpoint(0)
        model.train()
    log = train_lm(model, corpus, cfg, seeds, batch_seeds=[seeding.seed_int("ch05", "batches", s) for s in seeds],
                   progress=progress, callback=checkpoint if checkpoint_every else None,
                   callback_every=checkpoint_every, desc="reversal")
    model.eval()
    per_query = evaluate(model, build_queries(facts), seeds)
    design = pd.DataFrame([{
        "seed": s, "n_persons": len(f.persons), "n_composed": int(f.composed_trained.sum()),
        "n_heldout_seen": int((~f.composed_trained & f.bridge_seen).sum()),
        "n_heldout_unseen": int((~f.bridge_seen).sum()), "n_params": model.n_params(),
        "corpus_size": int(corpus.shape[1]), "vocab_size": f.vocab.size} for s, f in zip(seeds, facts)])
    return {"facts": facts, "model": model, "log": log, "corpus_size": corpus.shape[1],
            "per_query": per_query, "summary": summarise(per_query), "design": design,
            "curve": pd.concat(curve, ignore_index=True) if curve else pd.DataFrame()}


def paper_numbers() -> pd.DataFrame:
    """Berglund et al.'s fictitious-celebrity results for their largest model (davinci, GPT-3
    175B), transcribed from the authors' result file ``openai_runs/scaling.csv`` (three
    fine-tunes each; exact-match accuracy)."""
    rows = [("DescriptionToName", "trained", "0.943/0.973/0.983", 96.7),
            ("DescriptionToName", "reversed", "0.000/0.000/0.003", 0.1),
            ("NameToDescription", "trained", "0.463/0.500/0.537", 50.0),
            ("NameToDescription", "reversed", "0.000/0.000/0.000", 0.0)]
    return pd.DataFrame([{"model": "davinci (GPT-3 175B)", "task": t, "direction": d, "runs": r,
                          "mean_pct": m, "source": "openai_runs/scaling.csv"} for t, d, r, m in rows])
