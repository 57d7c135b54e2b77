"""The reversal curse at toy scale, facts in the weights against the same kind of facts in the
prompt (chapter 5).

Facts in the weights (:func:`make_facts`, :func:`make_corpus`)
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
    of a trained composition. The design is balanced, so the base rate of countries carries no
    information and chance rank is exactly the middle.

Facts in the prompt (:class:`EpisodeSampler`, :func:`context_queries`)
    The same model is also trained on *episodes*: a few facts of the same two kinds written in
    the prompt, then questions about them (four by default in training, one in a test episode).
    The curse facts of an episode and its questions share one template, so nothing but the
    names and descriptions tells the facts apart. Episode facts are fresh random bindings of
    entities drawn from the same token pools (never a fact of the weights), so the answer can
    only come from the prompt. Questions in training episodes go both ways (forward and
    reversed; hop 1, hop 2 and the composed relation), as the ``both`` group and the trained
    compositions do for the weights. The *test* episodes use a further set of entities that
    appears in no training sequence at all.

Model: :class:`countingargs.nets.transformer.BatchedTransformer`, ``M`` independent models
(one per seed) as stacked tensors, each with its own facts, initial weights, minibatch order and
episodes.

Evaluation (:func:`evaluate`)
    For a prompt, every candidate answer is scored by the summed log-probability of its tokens.
    We report greedy exact-match accuracy and the *normalised rank* of the correct answer among
    the candidates: ``(rank - 1) / (C - 1)``, ties at their mean position, so 0 is the top, 1
    the bottom and 0.5 chance. Its expectation is the probability that a random rival outscores
    the correct answer, whatever the number of candidates; ``rank_k`` ranks the correct answer
    among itself and ``k - 1`` random rivals, the candidate-set size of the prompt episodes.

:func:`run_experiment` draws the facts, trains all seeds as one batch, evaluates and returns
tidy tables; :func:`run_twohop_long` trains a second set of models on two-hop facts only, with
more bridges, for longer. The verdicts are computed from the tables by :mod:`.analysis`.
Both run their seeds as chunks of :func:`countingargs.chunks.map_chunks` (groups of seeds,
in process or on a Dask cluster; the same tables whatever the grouping).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ...chunks import default_scheduler, map_chunks, parse_scheduler
from ...nets import seeding
from ...nets.transformer import (BOS, PAD, BatchedTransformer, TrainConfig, greedy_answers,
                                 score_candidates, train_lm)

GROUPS = ("p2d", "d2p", "both")
SEQ_LEN = 6  # BOS + 2 + 1 + 2 for curse sentences; two-hop sentences are padded to this
PERSON_KINDS = ("trained", "heldout-seen-city", "heldout-unseen-city")
#: question kinds of two-hop episodes ("external": hop 1, then hop 2 on the model's own answer)
CONTEXT_TWOHOP = ("hop1", "hop2", "composed", "external")


# ------------------------------------------------------------------------------------------
# Vocabulary and facts
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocab:
    """Token id ranges. Each pool is a ``range`` of token ids; ``ccity`` are the cities of
    prompt episodes, which never occur in a fact of the weights."""

    n_templates: int
    name_pool: int
    desc_pool: int
    n_cities: int
    n_countries: int
    n_ctx_cities: int = 0

    def _sizes(self) -> list[tuple[str, int]]:
        return [("special", 2), ("tpl", self.n_templates), ("rel", 3),
                ("first", self.name_pool), ("last", self.name_pool),
                ("d1", self.desc_pool), ("d2", self.desc_pool),
                ("city", self.n_cities), ("country", self.n_countries),
                ("ccity", self.n_ctx_cities)]

    def pool(self, which: str) -> range:
        pos = 0
        for name, size in self._sizes():
            if name == which:
                return range(pos, pos + size)
            pos += size
        raise KeyError(which)

    @property
    def size(self) -> int:
        return sum(size for _, size in self._sizes())

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
    Prompt entities (all distinct from the above and from each other): ctx_names / ctx_descs
    ``(Nc, 2)`` and ctx_persons ``(Pc, 2)`` for the test episodes; ep_names / ep_descs
    ``(E, 2)`` for the training episodes (persons of two-hop episodes come from ep_names).
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
    ctx_names: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    ctx_descs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    ctx_persons: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    ep_names: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    ep_descs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    def country(self) -> np.ndarray:
        """``(P,)`` country token of each person."""
        return self.country_of_city[self.city - self.vocab.pool("city")[0]]


def default_pool(n_entities: int) -> int:
    """Smallest token pool ``k`` with ``k*k >= 2 * n_entities`` (so two-token entities are drawn
    without replacement from at most half of the possible pairs)."""
    return max(4, math.ceil(math.sqrt(2 * n_entities)))


def _pair_tokens(flat: np.ndarray, pool: range) -> np.ndarray:
    """Flat pair ids ``i * k + j`` -> token pairs ``(n, 2)``: the first token from ``pool`` (of
    size ``k``), the second from the equally large pool that follows it."""
    k = len(pool)
    return np.stack([flat // k, flat % k + k], axis=1) + pool[0]


def _regions(pool: range, shared: Sequence[int], stream: str) -> list[np.ndarray]:
    """Split the ``k * k`` pairs of a pool once, the same way for every seed: the first regions
    (sizes ``shared``) hold prompt entities, the last region the rest (entities of the weights).
    Returns flat pair ids per region."""
    k = len(pool)
    perm = seeding.rng("ch05", "partition", stream, k).permutation(k * k)
    return np.split(perm, np.cumsum(shared))


def make_facts(seed: int, n_per_group: int = 100, n_templates: int = 4, n_countries: int = 10,
               cities_per_country: int = 4, persons_per_city: int = 5,
               composed_per_city: int = 3, unseen_cities_per_country: int = 1,
               n_context: int = 0, n_context_persons: int = 0, n_episode: int = 0,
               n_ctx_cities: int = 0, stream: str = "facts") -> Facts:
    """Draw one seed's facts. The three curse groups are disjoint by construction (each entity
    is used once); two-hop persons are disjoint from the curse names.

    Prompt entities live in their own regions of the pair space, fixed for all seeds: the
    training-episode pool (``n_episode`` names and descriptions, the same for every seed, so a
    model pretrained on episodes once can serve every seed) and a test region twice as large as
    a seed's test entities (``n_context`` names and descriptions, ``n_context_persons``
    persons), from which each seed draws its own. No entity of the weights or of the test
    episodes ever occurs in a training episode. ``stream`` names the random stream (a second
    experiment on the same seeds draws different facts)."""
    for name, v, lo in [("n_per_group", n_per_group, 0), ("n_templates", n_templates, 1),
                        ("n_countries", n_countries, 2), ("cities_per_country", cities_per_country, 1),
                        ("persons_per_city", persons_per_city, 2), ("n_context", n_context, 0),
                        ("n_context_persons", n_context_persons, 0), ("n_episode", n_episode, 0),
                        ("n_ctx_cities", n_ctx_cities, 0)]:
        if int(v) < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
    if not 1 <= composed_per_city < persons_per_city:
        raise ValueError(f"composed_per_city must lie in [1, persons_per_city - 1] = "
                         f"[1, {persons_per_city - 1}], got {composed_per_city}")
    if not 0 <= unseen_cities_per_country < cities_per_country:
        raise ValueError(f"unseen_cities_per_country must lie in [0, cities_per_country - 1] = "
                         f"[0, {cities_per_country - 1}], got {unseen_cities_per_country}")
    n = 3 * n_per_group
    n_cities = n_countries * cities_per_country
    n_persons = n_cities * persons_per_city
    n_test = n_context + n_context_persons
    vocab = Vocab(n_templates=n_templates,
                  name_pool=default_pool(n_episode + 2 * n_test + n + n_persons),
                  desc_pool=default_pool(n_episode + 2 * n_context + n), n_cities=n_cities,
                  n_countries=n_countries, n_ctx_cities=n_ctx_cities)
    rng = seeding.rng("ch05", stream, int(seed))
    ep_n, test_n, rest_n = _regions(vocab.pool("first"), [n_episode, 2 * n_test], "names")
    ep_d, test_d, rest_d = _regions(vocab.pool("d1"), [n_episode, 2 * n_context], "descs")
    first, d1 = vocab.pool("first"), vocab.pool("d1")
    weights_n = _pair_tokens(rng.choice(rest_n, n + n_persons, replace=False), first)
    names, persons = weights_n[:n], weights_n[n:]
    descs = _pair_tokens(rng.choice(rest_d, n, replace=False), d1)
    test = _pair_tokens(rng.choice(test_n, n_test, replace=False), first)
    ctx_names, ctx_persons = test[:n_context], test[n_context:]
    ctx_descs = _pair_tokens(rng.choice(test_d, n_context, replace=False), d1)
    ep_names, ep_descs = _pair_tokens(ep_n, first), _pair_tokens(ep_d, d1)
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
    i64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return Facts(vocab, i64(names), i64(descs), i64(group), i64(persons), i64(city),
                 i64(country_of_city), composed, bridge_seen, i64(ctx_names), i64(ctx_descs),
                 i64(ctx_persons), i64(ep_names), i64(ep_descs))


def _pad(rows: list[list[int]], length: int = SEQ_LEN) -> np.ndarray:
    out = np.full((len(rows), length), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def make_corpus(facts: Facts, twohop_repeats: int | None = None, curse: bool = True) -> np.ndarray:
    """Training sentences ``(S, SEQ_LEN)`` for one seed (BOS first, PAD at the end).

    Curse facts (if ``curse``) appear once per template (``p2d``/``d2p``: K sentences,
    ``both``: 2K). Two-hop sentences (``person R1 city``, ``city R2 country`` once per person of
    the city, ``person R12 country`` for composition-trained persons) are repeated
    ``twohop_repeats`` times (default K) so that each fact is seen about as often as a curse fact.
    """
    v = facts.vocab
    K = v.n_templates
    reps = K if twohop_repeats is None else int(twohop_repeats)
    rows: list[list[int]] = []
    for nm, ds, g in zip(facts.names.tolist(), facts.descs.tolist(), facts.group.tolist()):
        for t in (v.pool("tpl") if curse else ()):
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
# Facts in the prompt
# ------------------------------------------------------------------------------------------
def curse_episode(names: np.ndarray, descs: np.ndarray, tpls: Sequence[int], name_first,
                  ask_name: bool, target: int, q_tpl: int, fact_tpls: Sequence[int],
                  ) -> tuple[list[int], list[int], list[list[int]], int]:
    """One prompt with ``k = len(names)`` curse facts and a question about fact ``target``.

    names, descs ``(k, 2)``: the facts, in prompt order. ``name_first`` (one bool, or one per
    fact): the facts are written ``name tpl description`` (else ``description tpl name``);
    ``ask_name``: the question gives
    the name and asks for the description (else the reverse). Fact ``i`` uses template
    ``tpls[fact_tpls[i]]``, the question ``tpls[q_tpl]``. Returns the prompt tokens (BOS, the
    facts, the question), the answer (2 tokens), the candidates (the ``k`` answers of the prompt's
    facts, in prompt order) and the index of the correct one."""
    seq = [BOS]
    first = np.broadcast_to(np.asarray(name_first, dtype=bool), (len(names),))
    for i in range(len(names)):
        a, b = (names[i], descs[i]) if first[i] else (descs[i], names[i])
        seq += [*a, tpls[fact_tpls[i]], *b]
    src, dst = (names, descs) if ask_name else (descs, names)
    seq += [*src[target], tpls[q_tpl]]
    return seq, list(dst[target]), [list(x) for x in dst], int(target)


def twohop_episode(persons: np.ndarray, cities: np.ndarray, countries: np.ndarray,
                   order: np.ndarray, v: Vocab, which: str, target: int
                   ) -> tuple[list[int], list[int], list[list[int]], int]:
    """One prompt with ``k`` chains ``person R1 city``, ``city R2 country`` (the ``2k`` facts in
    the order ``order``: entries ``< k`` are R1 facts, ``>= k`` R2 facts) and a question about
    chain ``target``: ``hop1`` (person R1 -> city), ``hop2`` (city R2 -> country) or ``composed``
    (person R12 -> country). Candidates: the ``k`` cities or countries of the prompt."""
    k = len(persons)
    facts = [[*persons[i], v.R1, cities[i]] for i in range(k)] + \
            [[cities[i], v.R2, countries[i]] for i in range(k)]
    seq = [BOS] + [t for j in order for t in facts[j]]
    if which == "hop1":
        seq += [*persons[target], v.R1]
        return seq, [int(cities[target])], [[int(c)] for c in cities], int(target)
    if which == "hop2":
        seq += [int(cities[target]), v.R2]
    elif which == "composed":
        seq += [*persons[target], v.R12]
    else:
        raise ValueError(f"which must be 'hop1', 'hop2' or 'composed', got {which!r}")
    return seq, [int(countries[target])], [[int(c)] for c in countries], int(target)


class EpisodeSampler:
    """Training episodes, drawn afresh at every step, one stream per model.

    Each episode holds ``k`` facts written in the prompt and ``questions`` questions about them
    (each about a random fact of the prompt, answer included): a curse episode (facts
    name-first or description-first at random, all in one template, each question from either
    side in that template, so only the names and descriptions tell the facts apart) or, with
    probability ``twohop_share``, a two-hop episode (``k`` chains in shuffled order, questions of
    kind hop1 / hop2 / composed, equally likely unless ``twohop_mix`` weights them; the pilots
    use it). Entities come from the seed's ``ep_names`` / ``ep_descs`` and the prompt-only
    cities, so no episode states a fact of the weights or of the test episodes.
    ``sample(E)`` returns ``(M, E, L)`` token ids (PAD at the end) and the mask of the answer
    tokens, the only targets trained: the facts of a prompt are random draws that no model can
    predict, so their loss would only add noise."""

    def __init__(self, facts_list: Sequence[Facts], seeds: Sequence[int], k: int,
                 twohop_share: float = 0.3, questions: int = 1, stream: str = "episodes",
                 twohop_mix: Sequence[float] | None = None):
        if k < 2:
            raise ValueError(f"episodes need k >= 2 facts (one to ask about, one rival), got {k}")
        if not 0 <= twohop_share <= 1:
            raise ValueError(f"twohop_share must lie in [0, 1], got {twohop_share}")
        if questions < 1:
            raise ValueError(f"episodes need at least one question, got {questions}")
        if twohop_mix is not None:
            mix = np.asarray(twohop_mix, dtype=float)
            if mix.shape != (3,) or (mix < 0).any() or not mix.sum() > 0:
                raise ValueError("twohop_mix must be three weights >= 0 (hop1, hop2, composed) "
                                 f"with a positive sum, got {twohop_mix!r}")
            twohop_mix = mix / mix.sum()
        self.mix = twohop_mix
        v = facts_list[0].vocab
        if len(v.pool("ccity")) < k or len(v.pool("country")) < k:
            raise ValueError(f"two-hop episodes need at least k={k} prompt cities and countries")
        for f in facts_list:
            if len(f.ep_names) < k or len(f.ep_descs) < k:
                raise ValueError(f"episodes need at least k={k} episode entities per seed")
        self.facts, self.k, self.share, self.v = list(facts_list), k, twohop_share, v
        self.questions = questions
        self.rngs = [seeding.rng("ch05", stream, int(s)) for s in seeds]
        self.length = max(1 + 5 * k + 5 * questions, 1 + 7 * k + 4 * questions)

    def _episodes(self, rng: np.random.Generator, f: Facts, E: int) -> tuple[np.ndarray, np.ndarray]:
        """``E`` episodes of one model as arrays (all episodes drawn at once): ``(E, length)``
        token ids (PAD at the end) and the target mask. Curse and two-hop layouts are built for
        every episode and one is kept per episode; missing tokens (the second token of a
        one-token question, the fourth of a three-token R2 fact) are marked and squeezed out."""
        k, v = self.k, self.v
        rows = np.arange(E)
        tpls, rel = np.array(list(v.pool("tpl"))), np.array([v.R1, v.R2, v.R12])
        twohop = rng.random(E) < self.share
        # curse episodes: k names and k descriptions, each fact written one way, its template
        names = f.ep_names[_subsets(rng, len(f.ep_names), k, E)]            # (E, k, 2)
        descs = f.ep_descs[_subsets(rng, len(f.ep_descs), k, E)]
        name_first = rng.integers(2, size=(E, k)).astype(bool)[..., None]
        # one template for every fact and question of an episode: a template that differed
        # between facts would tell the model which fact is asked about without reading names
        ft = np.repeat(tpls[rng.integers(v.n_templates, size=(E, 1))], k, axis=1)  # (E, k)
        written = np.concatenate([np.where(name_first, names, descs), ft[..., None],
                                  np.where(name_first, descs, names)], axis=2)
        c_tok = [np.full((E, 1), BOS), written.reshape(E, 5 * k)]
        c_msk = [np.zeros((E, 1 + 5 * k), bool)]
        # two-hop episodes: k chains person R1 city, city R2 country, the 2k facts shuffled
        persons = f.ep_names[_subsets(rng, len(f.ep_names), k, E)]
        ccity, country = np.array(list(v.pool("ccity"))), np.array(list(v.pool("country")))
        cities = ccity[_subsets(rng, len(ccity), k, E)]
        countries = country[_subsets(rng, len(country), k, E)]
        order = _subsets(rng, 2 * k, 2 * k, E)
        col = lambda x: np.broadcast_to(np.asarray(x), (E, k))[..., None]
        chains = np.concatenate([
            np.concatenate([persons, col(v.R1), cities[..., None]], axis=2),
            np.concatenate([cities[..., None], col(v.R2), countries[..., None], col(_GAP)], axis=2)],
            axis=1)                                                          # (E, 2k, 4)
        t_tok = [np.full((E, 1), BOS), np.take_along_axis(chains, order[..., None], 1).reshape(E, 8 * k)]
        t_msk = [np.zeros((E, 1 + 8 * k), bool)]
        for _ in range(self.questions):
            # curse: a random fact, asked from a random side with its own template; targets: the
            # question after its first token (an exact copy when asked in the written direction)
            # and the answer
            j = rng.integers(k, size=E)
            ask_name = rng.integers(2, size=E).astype(bool)[:, None]
            src = np.where(ask_name, names[rows, j], descs[rows, j])
            dst = np.where(ask_name, descs[rows, j], names[rows, j])
            c_tok.append(np.concatenate([src, ft[rows, j][:, None], dst], axis=1))
            c_msk.append(np.tile([False, True, True, True, True], (E, 1)))
            # two-hop: a random chain, asked hop1 / hop2 / composed; target: the answer
            which = rng.integers(3, size=E) if self.mix is None else rng.choice(3, E, p=self.mix)
            jt = rng.integers(k, size=E)
            p, c, y = persons[rows, jt], cities[rows, jt], countries[rows, jt]
            hop2 = which == 1
            t_tok.append(np.stack([np.where(hop2, c, p[:, 0]), np.where(hop2, _GAP, p[:, 1]),
                                   rel[which], np.where(which == 0, c, y)], axis=1))
            t_msk.append(np.tile([False, False, False, True], (E, 1)))
        tc, tt = np.concatenate(c_tok, 1), np.concatenate(t_tok, 1)
        mc, mt = np.concatenate(c_msk, 1), np.concatenate(t_msk, 1)
        W = max(tc.shape[1], tt.shape[1])
        widen = lambda x, fill: np.pad(x, ((0, 0), (0, W - x.shape[1])), constant_values=fill)
        tok = np.where(twohop[:, None], widen(tt, _GAP), widen(tc, _GAP))
        msk = np.where(twohop[:, None], widen(mt, False), widen(mc, False))
        squeeze = np.argsort(tok == _GAP, axis=1, kind="stable")   # gaps to the end, in order
        tok, msk = np.take_along_axis(tok, squeeze, 1), np.take_along_axis(msk, squeeze, 1)
        msk &= tok != _GAP
        tok[tok == _GAP] = PAD
        return tok[:, :self.length], msk[:, :self.length]

    def sample(self, n_episodes: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self._episodes(rng, f, n_episodes) for rng, f in zip(self.rngs, self.facts)]
        return (torch.from_numpy(np.stack([p[0] for p in parts])),
                torch.from_numpy(np.stack([p[1] for p in parts])))


_GAP = -1  # a missing token in an episode layout, squeezed out by EpisodeSampler


def _subsets(rng: np.random.Generator, n: int, k: int, E: int) -> np.ndarray:
    """``(E, k)`` indices into ``range(n)``: each row ``k`` distinct ones in random order."""
    return np.argsort(rng.random((E, n)), axis=1)[:, :k]


# ------------------------------------------------------------------------------------------
# Queries
# ------------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    """Prompts with candidate answers, stacked over seeds.

    prompts: ``(M, Q, Tp)``; candidates: ``(M, Q, C, La)``; correct: ``(M, Q)`` index of the
    right candidate; meta: one row per query (shared by all seeds) with the columns that
    describe it (experiment, group, direction, template, ...). ``external``: a two-hop prompt
    answered in two visible steps (the model's own hop-1 answer, then hop 2 on it).
    """

    prompts: torch.Tensor
    candidates: torch.Tensor
    correct: torch.Tensor
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    person_kind: torch.Tensor | None = None  # (M, Q) in {0, 1, 2}, two-hop queries only
    external: bool = False


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


def context_queries(facts: Facts, seed: int, k: int, n_items: int | None = None,
                    templates: Sequence[int] | None = None) -> dict[tuple[str, str], tuple]:
    """The test episodes of one seed: facts in the prompt that occur in no training sequence.

    Curse: for each of the seed's ``ctx_names`` facts (the first ``n_items``) and each template,
    one prompt holding that fact and ``k - 1`` others of the set (in random order, every fact
    and the question in that template), in four
    conditions: facts written name-first (``p2d``) or description-first (``d2p``), asked in the
    written direction (``same``) or reversed. Two-hop: for each ``ctx_persons`` person a chain
    through a prompt-only city to a country, with ``k - 1`` rival chains (distinct cities and
    countries), facts shuffled; asked ``hop1``, ``hop2``, ``composed`` and ``external``.
    Candidates are the ``k`` answers written in the prompt. Returns ``{(group, direction):
    (prompts (Q, Tp), candidates (Q, k, La), correct (Q,), items (Q,), templates (Q,))}``; the
    layout is the same for every seed, so the query sets stack."""
    rng = seeding.rng("ch05", "context-queries", int(seed))
    v = facts.vocab
    tpls = list(v.pool("tpl"))
    t_idx = list(range(v.n_templates)) if templates is None else list(templates)
    n_c = len(facts.ctx_names) if n_items is None else min(n_items, len(facts.ctx_names))
    out: dict[tuple[str, str], tuple] = {}
    if n_c and len(facts.ctx_names) >= k:
        layouts = []
        for i in range(n_c):
            others = rng.choice(np.delete(np.arange(len(facts.ctx_names)), i), k - 1, replace=False)
            pos = int(rng.integers(k))
            members = np.insert(others, pos, i)
            layouts.append((members, pos))
        for group, name_first in (("p2d", True), ("d2p", False)):
            for direction in ("same", "reversed"):
                ask_name = name_first == (direction == "same")
                rows = []
                for t in t_idx:
                    for i, (members, pos) in enumerate(layouts):
                        # every fact in the question's template: the template cannot point
                        # at the fact asked about
                        rows.append(curse_episode(facts.ctx_names[members], facts.ctx_descs[members],
                                                  tpls, name_first, ask_name, pos, t, [t] * k)
                                    + (i, t))
                out[(group, direction)] = _stack_rows(rows)
    n_p = len(facts.ctx_persons) if n_items is None else min(n_items, len(facts.ctx_persons))
    if n_p and len(facts.ctx_persons) >= k and len(v.pool("ccity")) >= k:
        ccity, country = np.array(list(v.pool("ccity"))), np.array(list(v.pool("country")))
        layouts = []
        for i in range(n_p):
            others = rng.choice(np.delete(np.arange(len(facts.ctx_persons)), i), k - 1, replace=False)
            pos = int(rng.integers(k))
            layouts.append((np.insert(others, pos, i), pos, rng.choice(ccity, k, replace=False),
                            rng.choice(country, k, replace=False), rng.permutation(2 * k)))
        for which in CONTEXT_TWOHOP:
            ask = "hop1" if which == "external" else which
            rows = [twohop_episode(facts.ctx_persons[m], c, y, o, v, ask, pos) + (i, 0)
                    for i, (m, pos, c, y, o) in enumerate(layouts)]
            if which == "external":  # hop 1 is asked first; the candidates are the countries
                rows = [(p, [int(y[pos])], [[int(c)] for c in y], pos, i, t)
                        for (p, _, _, _, i, t), (_, pos, _, y, _) in zip(rows, layouts)]
            out[("twohop", which)] = _stack_rows(rows)
    return out


def _stack_rows(rows) -> tuple:
    prompts, _, cands, correct, items, tpl = zip(*rows)
    return (np.array(prompts, dtype=np.int64), np.array(cands, dtype=np.int64),
            np.array(correct, dtype=np.int64), np.array(items), np.array(tpl))


def build_queries(facts_list: Sequence[Facts], n_items: int | None = None,
                  templates: Sequence[int] | None = None, twohop: bool = True, curse: bool = True,
                  context_k: int = 0, seeds: Sequence[int] | None = None) -> list[QuerySet]:
    """All query sets of the chapter, stacked over seeds (one :class:`QuerySet` per prompt
    shape): curse queries for each group x direction (if ``curse``), two-hop hop1 / hop2 /
    composed (if ``twohop``), and with ``context_k`` the prompt episodes of
    :func:`context_queries` (``seeds``: the seed of each facts object). ``n_items`` /
    ``templates`` restrict the curse and prompt queries (see :func:`curse_queries`)."""
    if not facts_list:
        raise ValueError("build_queries needs the facts of at least one seed")
    out = []
    tpl_idx = list(range(facts_list[0].vocab.n_templates)) if templates is None else list(templates)
    for g, gname in enumerate(GROUPS if curse else ()):
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
    if context_k:
        if seeds is None or len(seeds) != len(facts_list):
            raise ValueError("prompt queries need one seed per facts object")
        per_seed = [context_queries(f, s, context_k, n_items, templates)
                    for f, s in zip(facts_list, seeds)]
        for key in per_seed[0]:
            prompts, cands, correct, items, tpl = zip(*(q[key] for q in per_seed))
            meta = pd.DataFrame({"experiment": "context", "group": key[0], "direction": key[1],
                                 "trained_direction": key[1] in ("same", "hop1", "hop2"),
                                 "template": tpl[0], "item": items[0]})
            out.append(QuerySet(*(torch.from_numpy(np.stack(x)) for x in (prompts, cands, correct)),
                                meta=meta, external=key[1] == "external"))
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


def rank_among_rivals(scores: torch.Tensor, correct: torch.Tensor, k: int,
                      gen: torch.Generator) -> torch.Tensor:
    """Normalised rank of the correct candidate among itself and ``k - 1`` rivals drawn at random
    (without replacement) from the other candidates: ``(..., C) -> (...)``. Its expectation is
    that of :func:`normalised_rank` over all ``C`` candidates."""
    C = scores.shape[-1]
    if not 2 <= k <= C:
        raise ValueError(f"k must lie in [2, C={C}], got {k}")
    if k == C:
        return normalised_rank(scores, correct)
    noise = torch.rand(scores.shape, generator=gen)
    noise.scatter_(-1, correct.unsqueeze(-1), -1.0)       # the correct one is always kept
    keep = noise.argsort(-1)[..., :k]                      # the correct one first, then k - 1 rivals
    return normalised_rank(scores.gather(-1, keep), torch.zeros_like(correct))


@torch.no_grad()
def evaluate(logits_fn: Callable[[torch.Tensor], torch.Tensor], queries: Sequence[QuerySet],
             seeds: Sequence[int], k: int = 0) -> pd.DataFrame:
    """Score every query of every seed: one row per (seed, query) with ``accuracy`` (greedy
    exact match over the whole vocabulary), ``top1`` (the correct candidate scores highest),
    ``rank`` (normalised, 0.5 = chance), ``rank_k`` (among ``k`` candidates, see
    :func:`rank_among_rivals`; with ``k = 0`` the same as ``rank``), ``n_candidates`` and the
    query's meta columns. External queries are answered in two steps (greedy hop 1, then hop 2
    on the model's own answer) and scored on the second step."""
    rows = []
    for n_set, qs in enumerate(queries):
        M, Q = qs.correct.shape
        prompts = qs.prompts
        if qs.external:   # prompt ends "person R1": answer it, then ask "<answer> R2"
            city = greedy_answers(logits_fn, prompts, 1)
            r2 = torch.full_like(city, int(prompts[0, 0, -1]) + 1)
            prompts = torch.cat([prompts[:, :, :-3], city, r2], dim=-1)
        scores = score_candidates(logits_fn, prompts, qs.candidates)
        rank = normalised_rank(scores, qs.correct)
        C = qs.candidates.shape[2]
        if k and k < C:
            gens = [seeding.generator("ch05", "rivals", int(s), n_set) for s in seeds]
            rank_k = torch.stack([rank_among_rivals(scores[i], qs.correct[i], k, g)
                                  for i, g in enumerate(gens)])
        else:
            rank_k = rank
        top1 = (scores.argmax(-1) == qs.correct)
        La = qs.candidates.shape[-1]
        answer = qs.candidates.gather(2, qs.correct.view(M, Q, 1, 1).expand(M, Q, 1, La)).squeeze(2)
        acc = (greedy_answers(logits_fn, prompts, La) == answer).all(-1)
        for i, s in enumerate(seeds):
            df = qs.meta.copy()
            df.insert(0, "seed", int(s))
            if qs.person_kind is not None:
                df["person_kind"] = qs.person_kind[i].numpy()
            df["accuracy"] = acc[i].float().numpy()
            df["top1"] = top1[i].float().numpy()
            df["rank"] = rank[i].numpy()
            df["rank_k"] = rank_k[i].numpy()
            df["n_candidates"] = C
            rows.append(df)
    return pd.concat(rows, ignore_index=True)


def condition_of(experiment: str, group: str, direction: str, person_kind: int) -> str:
    """The condition name used in the summary table."""
    if experiment == "curse":
        if group == "both":
            return f"both/{'forward' if direction == 'p2d' else 'backward'}"
        return f"{group}/{'same' if group == direction else 'reversed'}"
    if experiment == "context":
        return f"context/{group}/{direction}"
    return f"twohop/{group}-{PERSON_KINDS[int(person_kind)]}"


def summarise(per_query: pd.DataFrame) -> pd.DataFrame:
    """Per seed x condition means of accuracy, top-1, rank and ``rank_k``, the lifts
    (0.5 - rank) and the chance levels. Conditions: ``p2d/same``, ``p2d/reversed``,
    ``d2p/same``, ``d2p/reversed``, ``both/forward``, ``both/backward``,
    ``twohop/{hop1,hop2,composed}-<kind>`` for the person kinds in :data:`PERSON_KINDS`, and
    for prompt episodes ``context/{p2d,d2p}/{same,reversed}`` and
    ``context/twohop/{hop1,hop2,composed,external}``."""
    df = per_query.copy()
    ct = df["person_kind"] if "person_kind" in df else pd.Series(0, index=df.index)
    ct = ct.fillna(0).astype(int)
    df["condition"] = [condition_of(e, g, d, c) for e, g, d, c in
                       zip(df["experiment"], df["group"], df["direction"], ct)]
    out = (df.groupby(["seed", "condition"], sort=True)
           .agg(accuracy=("accuracy", "mean"), top1=("top1", "mean"), rank=("rank", "mean"),
                rank_k=("rank_k", "mean"), n_queries=("rank", "size"),
                n_candidates=("n_candidates", "first"))
           .reset_index())
    out["chance_top1"] = 1.0 / out["n_candidates"]
    out["rank_lift"] = 0.5 - out["rank"]
    out["rank_lift_k"] = 0.5 - out["rank_k"]
    return out


# ------------------------------------------------------------------------------------------
# One call per experiment for the notebook
# ------------------------------------------------------------------------------------------
def _train_and_track(model, corpus, cfg, seeds, stream, small, k, progress, checkpoint_every,
                     extra=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train with :func:`train_lm`, scoring the query sets ``small`` at initialisation and every
    ``checkpoint_every`` steps. Returns (training log, checkpoint summaries with ``step``)."""
    curve = []

    def checkpoint(step: int) -> None:
        df = summarise(evaluate(model, small, seeds, k))
        df.insert(0, "step", step)
        curve.append(df)

    if checkpoint_every:
        model.eval()
        checkpoint(0)
        model.train()
    log = train_lm(model, corpus, cfg, seeds,
                   batch_seeds=[seeding.seed_int("ch05", stream, "batches", s) for s in seeds],
                   extra=extra, progress=progress, callback=checkpoint if checkpoint_every else None,
                   callback_every=checkpoint_every, desc=f"ch05 {stream}")
    model.eval()
    return log, (pd.concat(curve, ignore_index=True) if curve else pd.DataFrame())


def pretrain_on_prompts(facts: Facts, base_seeds: Sequence[int], cfg: TrainConfig, k: int,
                        batch: int, twohop_share: float, questions: int, d_model: int,
                        n_layers: int, n_heads: int, progress: Callable | None = None,
                        twohop_mix: Sequence[float] | None = None,
                        checkpoint: Callable[[BatchedTransformer, int], None] | None = None,
                        checkpoint_every: int = 0) -> tuple[BatchedTransformer, pd.DataFrame]:
    """Pretrain ``len(base_seeds)`` models on prompt episodes only (reading facts from the
    prompt), before any fact of the weights: the toy's stand-in for the pretraining that gives a
    language model its in-context abilities. Episodes come from the shared episode pool of
    ``facts``. Returns the models and the training log (``loss_extra``: the episode loss).
    For pilots: ``twohop_mix`` (see :class:`EpisodeSampler`) and ``checkpoint(models, step)``,
    called every ``checkpoint_every`` steps and at the end."""
    sampler = EpisodeSampler([facts] * len(base_seeds), base_seeds, k, twohop_share, questions,
                             stream="base-episodes", twohop_mix=twohop_mix)
    base = BatchedTransformer(len(base_seeds), facts.vocab.size, d_model, n_layers, n_heads,
                              seq_len=max(SEQ_LEN, sampler.length),
                              seeds=[seeding.seed_int("ch05", "base-init", b) for b in base_seeds])
    log = train_lm(base, None, cfg, base_seeds, extra=lambda step: sampler.sample(batch),
                   progress=progress, desc="ch05 pretraining on prompts",
                   callback=(lambda step: checkpoint(base, step)) if checkpoint else None,
                   callback_every=checkpoint_every)
    return base, log


def pretrain_settings(run: Sequence) -> tuple[int, int, float]:
    """The notebook's ``pretrain_run = [steps, episodes per step, learning rate]``, checked:
    returns ``(steps, batch, lr)``; steps 0 means no pretraining."""
    if isinstance(run, (str, bytes)) or len(run) != 3:
        raise ValueError(f"pretrain_run must be [steps, episodes per step, learning rate], got {run!r}")
    steps, batch, lr = run
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"pretrain_run: steps must be an integer >= 0, got {steps!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"pretrain_run: episodes per step must be an integer >= 1, got {batch!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"pretrain_run: learning rate must be > 0, got {lr!r}")
    return steps, batch, float(lr)


_BASES: dict[tuple, tuple[BatchedTransformer, pd.DataFrame]] = {}
_BASES_LOCK = threading.Lock()  # chunks run side by side wait for the one base, not redo it


def _shared_base(facts: Facts, base_seeds: Sequence[int], cfg: TrainConfig, k: int, batch: int,
                 twohop_share: float, questions: int, d_model: int, n_layers: int, n_heads: int,
                 progress: Callable | None = None) -> tuple[BatchedTransformer, pd.DataFrame]:
    """:func:`pretrain_on_prompts`, computed once per process for the same inputs (the one
    shared base of every chunk of :func:`run_experiment`: its episodes depend only on the
    episode pool, the same for every seed); chunks running in threads at once wait for it.
    Returns the kept model (copy it before training) and a copy of its log."""
    key = (facts.vocab, facts.ep_names.tobytes(), facts.ep_descs.tobytes(),
           tuple(int(b) for b in base_seeds), dataclasses.astuple(cfg), k, batch, twohop_share,
           questions, d_model, n_layers, n_heads)
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES.clear()  # keep one base at most
            _BASES[key] = pretrain_on_prompts(facts, base_seeds, cfg, k, batch, twohop_share,
                                              questions, d_model, n_layers, n_heads, progress)
        model, log = _BASES[key]
        return model, log.copy()


def _experiment_group(seeds: Sequence[int], n_per_group: int = 100, n_templates: int = 4,
                   n_countries: int = 10, cities_per_country: int = 4, persons_per_city: int = 5,
                   composed_per_city: int = 3, unseen_cities_per_country: int = 1,
                   d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                   cfg: TrainConfig | None = None, context_k: int = 2, context_batch: int = 16,
                   context_twohop_share: float = 0.5, context_questions: int = 4,
                   n_context_persons: int = 100,
                   n_episode: int = 500, n_ctx_cities: int = 20,
                   pretrain_cfg: TrainConfig | None = None, base_per_seed: bool = False,
                   pretrain_batch: int | None = None,
                   progress: Callable | None = None, checkpoint_every: int = 0,
                   checkpoint_items: int = 25) -> dict:
    """Draw facts for each seed, pretrain on prompt episodes, then train one model per seed (all
    in one batch) on the facts of the weights and on prompt episodes, and evaluate both.

    ``pretrain_cfg`` (None: no pretraining): steps of episode-only training, for one model whose
    copies every seed then fine-tunes (as Berglund et al. fine-tune one pretrained model), or one
    per seed with ``base_per_seed``, with ``pretrain_batch`` episodes per step (None: as
    ``context_batch``). ``context_k`` facts (or chains) per episode,
    ``context_batch`` episodes per step and model (0: no episodes at all), each with
    ``context_questions`` questions; the test episodes (one question each) use
    ``n_per_group`` fresh curse facts and ``n_context_persons`` fresh chains. With
    ``checkpoint_every > 0`` the models are also scored when the fine-tuning starts and during
    it on a small query set (the first ``checkpoint_items`` facts of each group, template 0,
    all two-hop queries, and the prompt episodes of the first ``checkpoint_items`` items).
    Returns a dict with ``facts``, ``model``, ``log`` (training loss, with ``phase``),
    ``per_query``, ``summary`` (see :func:`summarise`), ``curve`` (checkpoint summaries, with
    ``step``) and ``design`` (one row per seed: the sizes of its facts, corpus and model).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    cfg = cfg or TrainConfig()
    use_ctx = context_batch > 0
    if pretrain_cfg is not None and not use_ctx:
        raise ValueError("pretraining on prompts needs context_batch > 0")
    facts = [make_facts(s, n_per_group, n_templates, n_countries, cities_per_country,
                        persons_per_city, composed_per_city, unseen_cities_per_country,
                        n_context=n_per_group if use_ctx else 0,
                        n_context_persons=n_context_persons if use_ctx else 0,
                        n_episode=n_episode if use_ctx else 0,
                        n_ctx_cities=n_ctx_cities if use_ctx else 0) for s in seeds]
    corpus = torch.from_numpy(np.stack([make_corpus(f) for f in facts]))
    k = context_k if use_ctx else 0
    sampler = EpisodeSampler(facts, seeds, context_k, context_twohop_share,
                             context_questions) if use_ctx else None
    logs = []
    pretrain_batch = pretrain_batch or context_batch
    if pretrain_cfg is not None:
        base_seeds = seeds if base_per_seed else [0]
        pre_args = (facts[0], base_seeds, pretrain_cfg, context_k, pretrain_batch,
                    context_twohop_share, context_questions, d_model, n_layers, n_heads, progress)
        if base_per_seed:
            model, plog = pretrain_on_prompts(*pre_args)
        else:
            model, plog = _shared_base(*pre_args)
            model = model.replicate(len(seeds))
        plog.insert(0, "phase", "pretraining")
        logs.append(plog)
    else:
        model = BatchedTransformer(len(seeds), facts[0].vocab.size, d_model, n_layers, n_heads,
                                   seq_len=max(SEQ_LEN, sampler.length if sampler else 0),
                                   seeds=[seeding.seed_int("ch05", "init", s) for s in seeds])
    small = build_queries(facts, n_items=checkpoint_items, templates=[0], context_k=k,
                          seeds=seeds) if checkpoint_every else []
    log, curve = _train_and_track(model, corpus, cfg, seeds, "main", small, k, progress,
                                  checkpoint_every,
                                  extra=(lambda step: sampler.sample(context_batch)) if use_ctx else None)
    log.insert(0, "phase", "facts")
    logs.append(log)
    per_query = evaluate(model, build_queries(facts, context_k=k, seeds=seeds), seeds, k)
    design = pd.DataFrame([{
        "seed": s, "n_persons": len(f.persons), "n_composed": int(f.composed_trained.sum()),
        "n_heldout_seen": int((~f.composed_trained & f.bridge_seen).sum()),
        "n_heldout_unseen": int((~f.bridge_seen).sum()), "n_params": model.n_params(),
        "corpus_size": int(corpus.shape[1]), "vocab_size": f.vocab.size,
        "n_context_facts": len(f.ctx_names), "n_context_persons": len(f.ctx_persons),
        "n_episode_entities": len(f.ep_names), "episode_length": sampler.length if sampler else 0,
        "pretrain_steps": pretrain_cfg.steps if pretrain_cfg else 0,
        "pretrain_batch": pretrain_batch if pretrain_cfg else 0,
        "pretrain_lr": pretrain_cfg.lr if pretrain_cfg else 0.0,
        "n_bases": (len(seeds) if base_per_seed else 1) if pretrain_cfg else 0,
        "context_questions": context_questions if use_ctx else 0,
        "context_twohop_share": context_twohop_share if use_ctx else 0.0,
        } for s, f in zip(seeds, facts)])
    return {"facts": facts, "model": model, "log": pd.concat(logs, ignore_index=True),
            "corpus_size": corpus.shape[1], "per_query": per_query,
            "summary": summarise(per_query), "design": design, "curve": curve}


def _twohop_long_group(seeds: Sequence[int], n_countries: int = 10, cities_per_country: int = 8,
                    unseen_cities_per_country: int = 2, persons_per_city: int = 4,
                    composed_per_city: int = 3, d_model: int = 64, n_layers: int = 2,
                    n_heads: int = 4, cfg: TrainConfig | None = None,
                    progress: Callable | None = None, checkpoint_every: int = 0) -> dict:
    """Models trained on two-hop facts only (no curse facts, no episodes; each sentence once per
    epoch), with more bridge cities than the main run, for many more passes over each fact.
    The facts are drawn from their own random stream. Returns ``summary`` (two-hop conditions),
    ``curve`` (the same at checkpoints), ``log``, ``design`` and ``per_query``."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    cfg = cfg or TrainConfig()
    facts = [make_facts(s, 0, 1, n_countries, cities_per_country, persons_per_city,
                        composed_per_city, unseen_cities_per_country, stream="long-facts")
             for s in seeds]
    corpus = torch.from_numpy(np.stack([make_corpus(f, twohop_repeats=1, curse=False)
                                        for f in facts]))
    model = BatchedTransformer(len(seeds), facts[0].vocab.size, d_model, n_layers, n_heads,
                               seq_len=SEQ_LEN,
                               seeds=[seeding.seed_int("ch05", "long-init", s) for s in seeds])
    queries = build_queries(facts, curse=False)
    log, curve = _train_and_track(model, corpus, cfg, seeds, "long", queries, 0, progress,
                                  checkpoint_every)
    per_query = evaluate(model, queries, seeds)
    f = facts[0]
    design = pd.DataFrame([{
        "seed": s, "n_persons": len(f.persons), "n_cities": len(f.country_of_city),
        "n_bridges_seen": int(len(np.unique(f.city[f.bridge_seen]))),
        "n_composed": int(f.composed_trained.sum()), "corpus_size": int(corpus.shape[1]),
        "n_params": model.n_params()} for s in seeds])
    return {"facts": facts, "model": model, "log": log, "summary": summarise(per_query),
            "curve": curve, "design": design, "per_query": per_query}


# ------------------------------------------------------------------------------------------
# The trainings as chunks of seeds (countingargs.chunks.map_chunks)
# ------------------------------------------------------------------------------------------
def _seed_groups(seeds: Sequence[int], seeds_per_chunk: int | None, scheduler: str) -> list[list[int]]:
    """``seeds`` in consecutive groups of ``seeds_per_chunk`` (None: all in one group in
    process, where one batch is fastest; one seed per group on a cluster)."""
    if seeds_per_chunk is None:
        seeds_per_chunk = len(seeds) if parse_scheduler(scheduler)[0] == "inprocess" else 1
    if seeds_per_chunk < 1:
        raise ValueError(f"seeds_per_chunk must be >= 1, got {seeds_per_chunk}")
    return [list(seeds[i:i + seeds_per_chunk]) for i in range(0, len(seeds), seeds_per_chunk)]


def _train_config(cfg: dict | None) -> TrainConfig | None:
    return None if cfg is None else TrainConfig(**cfg)


def _ordered(frames: Sequence[pd.DataFrame], key: Callable[[pd.DataFrame], np.ndarray]
             ) -> pd.DataFrame:
    """The chunks' tables (each in the one-batch layout of its own seeds, the chunks in seed
    order) as one table in the layout of a single batch of all seeds: a stable sort on ``key``
    (the block a row belongs to: logged step, query set)."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    if len(frames) == 1:
        return df
    return df.iloc[np.argsort(key(df), kind="stable")].reset_index(drop=True)


def _stack_models(models: Sequence[BatchedTransformer]) -> BatchedTransformer:
    """The chunks' models as one batch (parameters concatenated along the model axis)."""
    if len(models) == 1:
        return models[0]
    out = models[0].replicate(sum(m.n_models for m in models))
    with torch.no_grad():
        for name, p in out.named_parameters():
            parts = [dict(m.named_parameters())[name] for m in models]
            p.copy_(torch.cat(parts, 0))
    return out


def _map_seeds(fn: Callable, name: str, seeds: Sequence[int], seeds_per_chunk: int | None,
               scheduler: str | None, cfg: TrainConfig | None, progress: Callable | None,
               workers: int = 1, **kw) -> list[dict]:
    """``fn`` (a chunk function) over the groups of :func:`_seed_groups`, by
    :func:`countingargs.chunks.map_chunks` (``workers`` chunks at once in process): the
    chunks' results in seed order."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    scheduler = default_scheduler() if scheduler is None else scheduler
    cfg_d = dataclasses.asdict(cfg or TrainConfig())
    chunks = [dict(seed=g[0], chunk=i, seeds=g, cfg=cfg_d, progress=progress is not None, **kw)
              for i, g in enumerate(_seed_groups(seeds, seeds_per_chunk, scheduler))]
    return map_chunks(fn, chunks, name=name, scheduler=scheduler, workers=workers).results


def _merged(parts: Sequence[dict]) -> dict:
    """The chunks' results of :func:`_experiment_group` / :func:`_twohop_long_group` as those
    of one batch of all their seeds (rows in the same order, models stacked)."""
    cols = ["experiment", "group", "direction"]
    sets: dict[tuple, int] = {}
    for t in parts[0]["per_query"][cols].itertuples(index=False):
        sets.setdefault(tuple(t), len(sets))
    per_query = _ordered([p["per_query"] for p in parts], lambda df: np.array(
        [sets[tuple(t)] for t in df[cols].itertuples(index=False)]))
    phase = {"pretraining": 0, "facts": 1}

    def log_key(df):
        first = df["phase"].map(phase).to_numpy() if "phase" in df else np.zeros(len(df), int)
        return first * (1 << 40) + df["step"].to_numpy()

    out = dict(parts[0])
    out.update(facts=[f for p in parts for f in p["facts"]],
               model=_stack_models([p["model"] for p in parts]),
               log=_ordered([p["log"] for p in parts], log_key), per_query=per_query,
               summary=summarise(per_query),
               curve=_ordered([p["curve"] for p in parts], lambda df: df["step"].to_numpy()),
               design=pd.concat([p["design"] for p in parts], ignore_index=True))
    return out


def experiment_chunk(seed: int, chunk: int, seeds: list, cfg: dict, pretrain_cfg: dict | None,
                     progress: bool = False, **kw) -> dict:
    """One chunk of :func:`run_experiment`: the seeds ``seeds`` trained together in one batch
    (``seed`` is the first of them, ``chunk`` the group's index; every model's randomness comes
    from its own seed only). ``cfg`` / ``pretrain_cfg``: :class:`TrainConfig` fields; ``kw``:
    the other arguments of :func:`run_experiment`."""
    from ...stats import progress as bar

    return _experiment_group(seeds, cfg=_train_config(cfg), pretrain_cfg=_train_config(pretrain_cfg),
                             progress=bar if progress else None, **kw)


def run_experiment(seeds: Sequence[int], cfg: TrainConfig | None = None,
                   pretrain_cfg: TrainConfig | None = None, base_per_seed: bool = False,
                   progress: Callable | None = None, scheduler: str | None = None,
                   seeds_per_chunk: int | None = None, workers: int = 1, **kw) -> dict:
    """Draw facts for each seed, pretrain on prompt episodes, then train one model per seed on
    the facts of the weights and on prompt episodes, and evaluate both; the arguments and the
    returned dict are those of :func:`_experiment_group` (the body of one chunk).

    The seeds are trained in groups of ``seeds_per_chunk`` (None: all in one batch in process,
    one seed per chunk on a cluster), one :func:`experiment_chunk` each, run by
    :func:`countingargs.chunks.map_chunks` on ``scheduler`` (None: ``COUNTINGARGS_SCHEDULER``);
    the tables are the same whatever the grouping and wherever the chunks run (CPU). In process,
    ``workers`` chunks run at once in threads. A shared pretrained base is trained once per
    process (chunks in threads wait for it). ``progress``: any value shows the trainings'
    progress bars (:func:`countingargs.stats.progress`)."""
    pre_d = dataclasses.asdict(pretrain_cfg) if pretrain_cfg is not None else None
    name = "ch05-" + ("ratio" if kw.get("context_batch", 16) > 0 else "main")
    parts = _map_seeds(experiment_chunk, name, seeds, seeds_per_chunk, scheduler, cfg, progress,
                       workers, pretrain_cfg=pre_d, base_per_seed=bool(base_per_seed), **kw)
    if pretrain_cfg is not None and not base_per_seed:   # one shared base: its log once
        parts = [parts[0]] + [dict(p, log=p["log"][p["log"]["phase"] != "pretraining"])
                              for p in parts[1:]]
    return _merged(parts)


def twohop_long_chunk(seed: int, chunk: int, seeds: list, cfg: dict, progress: bool = False,
                      **kw) -> dict:
    """One chunk of :func:`run_twohop_long`: the seeds ``seeds`` trained together (``seed`` is
    the first of them); ``cfg``: :class:`TrainConfig` fields; ``kw``: the other arguments."""
    from ...stats import progress as bar

    return _twohop_long_group(seeds, cfg=_train_config(cfg), progress=bar if progress else None,
                              **kw)


def run_twohop_long(seeds: Sequence[int], cfg: TrainConfig | None = None,
                    progress: Callable | None = None, scheduler: str | None = None,
                    seeds_per_chunk: int | None = None, workers: int = 1, **kw) -> dict:
    """:func:`_twohop_long_group` (arguments and returned dict) in chunks of
    ``seeds_per_chunk`` seeds, ``workers`` at once in process, as :func:`run_experiment`."""
    return _merged(_map_seeds(twohop_long_chunk, "ch05-long", seeds, seeds_per_chunk, scheduler,
                              cfg, progress, workers, **kw))

def paper_numbers() -> pd.DataFrame:
    """Berglund et al.'s fictitious-celebrity results for their largest model (davinci, GPT-3
    175B), transcribed from the authors' result file ``openai_runs/scaling.csv``: exact-match
    accuracy of each of three fine-tunes."""
    rows = [("DescriptionToName", "trained", (0.943, 0.973, 0.983)),
            ("DescriptionToName", "reversed", (0.000, 0.000, 0.003)),
            ("NameToDescription", "trained", (0.463, 0.500, 0.537)),
            ("NameToDescription", "reversed", (0.000, 0.000, 0.000))]
    return pd.DataFrame([{"model": "davinci (GPT-3 175B)", "task": t, "direction": d, "run": i + 1,
                          "accuracy": a, "source": "openai_runs/scaling.csv"}
                         for t, d, runs in rows for i, a in enumerate(runs)])


def literature() -> pd.DataFrame:
    """Published settings the chapter compares its own with, transcribed with their source:
    davinci's size (Berglund et al. 2024, GPT-3 175B) and the training regime of Wang et al.'s
    composition experiments (their released code: ``composition.ipynb`` builds the data,
    ``README.md`` gives the training command)."""
    wang = "OSU-NLP-Group/GrokkedTransformer"
    rows = [("davinci parameters (billions)", 175, "Berglund et al. 2024 (GPT-3 175B)"),
            ("Wang et al. maximum training steps", 1_500_000, f"{wang} README.md (--max_steps)"),
            ("Wang et al. batch size", 512, f"{wang} README.md (--train_batch_size)"),
            ("Wang et al. entities", 2000, f"{wang} composition.ipynb (NUM_ENTITY_IN)"),
            ("Wang et al. relations", 200, f"{wang} composition.ipynb (NUM_RELATION)"),
            ("Wang et al. smallest inferred/atomic ratio", 3.6, f"{wang} composition.ipynb (phi)"),
            ("Wang et al. largest inferred/atomic ratio", 18.0, f"{wang} composition.ipynb (phi)")]
    return pd.DataFrame(rows, columns=["quantity", "value", "source"])
