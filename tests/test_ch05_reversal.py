"""Chapter 05 (the reversal curse, facts in the weights and in the prompt): data generators,
scoring against hand-made models, and every outcome of every verdict rule."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from countingargs.chapters.ch05_reversal import analysis as A
from countingargs.chapters.ch05_reversal import experiment as R
from countingargs.nets import transformer as T


@pytest.fixture(scope="module")
def facts():
    return R.make_facts(seed=3, n_per_group=12, n_templates=3, n_countries=3,
                        cities_per_country=2, persons_per_city=4, composed_per_city=2,
                        n_context=8, n_context_persons=6, n_episode=20, n_ctx_cities=4)


def _sentences(corpus):
    return {tuple(int(t) for t in row if t != R.PAD) for row in corpus}


def _pairs(a):
    return {tuple(x) for x in np.asarray(a).tolist()}


# ---------------------------------------------------------------- data generators
def test_groups_are_disjoint_and_balanced(facts):
    n = len(facts.names)
    assert np.bincount(facts.group).tolist() == [12, 12, 12]
    assert len(_pairs(facts.names)) == n and len(_pairs(facts.descs)) == n
    v = facts.vocab
    assert set(facts.names[:, 0]) <= set(v.pool("first")) and set(facts.names[:, 1]) <= set(v.pool("last"))
    assert set(facts.descs[:, 0]) <= set(v.pool("d1")) and set(facts.descs[:, 1]) <= set(v.pool("d2"))


def test_prompt_entities_never_meet_the_weights_or_the_training_episodes(facts):
    weights_n = _pairs(facts.names) | _pairs(facts.persons)
    test_n = _pairs(facts.ctx_names) | _pairs(facts.ctx_persons)
    ep_n = _pairs(facts.ep_names)
    assert not (weights_n & test_n) and not (weights_n & ep_n) and not (test_n & ep_n)
    assert not (_pairs(facts.descs) & _pairs(facts.ctx_descs))
    assert not (_pairs(facts.ep_descs) & (_pairs(facts.descs) | _pairs(facts.ctx_descs)))
    assert len(facts.ctx_names) == 8 and len(facts.ctx_persons) == 6 and len(facts.ep_names) == 20
    # the episode pool is the same for every seed; the test entities differ
    other = R.make_facts(seed=4, n_per_group=12, n_templates=3, n_countries=3, cities_per_country=2,
                         persons_per_city=4, composed_per_city=2, n_context=8, n_context_persons=6,
                         n_episode=20, n_ctx_cities=4)
    assert np.array_equal(other.ep_names, facts.ep_names)
    assert not np.array_equal(other.ctx_names, facts.ctx_names)
    assert not (_pairs(other.names) & _pairs(facts.ep_names))
    # no training sequence (corpus or episode) contains a test entity
    sampler = R.EpisodeSampler([facts, other], [3, 4], 2, twohop_share=0.5, questions=2)
    tokens, mask = sampler.sample(200)
    for seq in tokens.reshape(-1, tokens.shape[-1]).tolist():
        bigrams = set(zip(seq, seq[1:]))
        assert not (bigrams & (test_n | _pairs(facts.ctx_descs)))
    assert mask.any() and not mask[..., 0].any()


def _check_episode(seq, targets, v, k):
    """Parse one training episode; assert that every question's answer follows from the facts
    written in its prompt and that exactly the question tails and answers are targets."""
    seq = [t for t in seq if t != R.PAD]
    if {v.R1, v.R2, v.R12} & set(seq):                       # two-hop: k chains, 2k facts
        r1, r2, i, body = {}, {}, 0, seq[1:]
        for _ in range(2 * k):
            if body[i + 2] == v.R1:
                r1[tuple(body[i:i + 2])] = body[i + 3]
                i += 4
            else:
                assert body[i + 1] == v.R2
                r2[body[i]] = body[i + 2]
                i += 3
        assert len(r1) == len(r2) == k and set(r1.values()) == set(r2)
        qs, want = body[i:], []
        while qs:
            if qs[1] == v.R2:
                assert r2[qs[0]] == qs[2]
                want, qs = want + [qs[2]], qs[3:]
            else:
                ans = r1[tuple(qs[:2])] if qs[2] == v.R1 else r2[r1[tuple(qs[:2])]]
                assert qs[2] in (v.R1, v.R12) and qs[3] == ans
                want, qs = want + [qs[3]], qs[4:]
        assert targets == want
        return "twohop"
    facts, qs, want = {}, seq[1 + 5 * k:], []
    for i in range(k):
        a, t, b = tuple(seq[1 + 5 * i:3 + 5 * i]), seq[3 + 5 * i], tuple(seq[4 + 5 * i:6 + 5 * i])
        facts[a], facts[b] = (t, b), (t, a)
    assert len(facts) == 2 * k
    # one template per episode: the question's template cannot point at the fact asked about
    assert len({seq[3 + 5 * i] for i in range(k)}) == 1
    while qs:
        t, b = facts[tuple(qs[:2])]
        assert qs[2] == t and tuple(qs[3:5]) == b
        want, qs = want + qs[1:5], qs[5:]
    assert targets == want
    return "curse"


@pytest.mark.parametrize("k,questions", [(2, 1), (3, 2)])
def test_episode_answers_follow_from_their_prompt(facts, k, questions):
    v = facts.vocab
    sampler = R.EpisodeSampler([facts, facts], [3, 4], k, twohop_share=0.4, questions=questions)
    tokens, mask = sampler.sample(300)
    assert tokens.shape == (2, 300, sampler.length)
    kinds = [_check_episode(s, [t for t, m in zip(s, mk) if m], v, k)
             for s, mk in zip(tokens.reshape(-1, sampler.length).tolist(),
                              mask.reshape(-1, sampler.length).tolist())]
    assert abs(kinds.count("twohop") / len(kinds) - 0.4) < 0.06
    # each model's episodes come from its own stream: the same seed alone gives the same ones
    alone = R.EpisodeSampler([facts], [4], k, twohop_share=0.4, questions=questions).sample(300)
    assert torch.equal(alone[0][0], tokens[1]) and torch.equal(alone[1][0], mask[1])
    assert not torch.equal(tokens[0], tokens[1])


def test_corpus_contains_each_group_only_in_its_directions(facts):
    sent = _sentences(R.make_corpus(facts))
    for nm, ds, g in zip(facts.names.tolist(), facts.descs.tolist(), facts.group.tolist()):
        for t in facts.vocab.pool("tpl"):
            assert ((R.BOS, *nm, t, *ds) in sent) == (g in (0, 2))
            assert ((R.BOS, *ds, t, *nm) in sent) == (g in (1, 2))
    assert len(_sentences(R.make_corpus(facts, twohop_repeats=1, curse=False))) == \
        len(facts.persons) * 2 + int(facts.composed_trained.sum()) - \
        (len(facts.persons) - len(np.unique(facts.city)))      # city sentences repeat per person


def test_twohop_is_balanced_and_composition_held_out(facts):
    country = facts.country()
    for kind in (facts.composed_trained, ~facts.composed_trained & facts.bridge_seen,
                 ~facts.bridge_seen):
        assert kind.any()
        counts = np.unique(country[kind], return_counts=True)[1]
        assert len(counts) == facts.vocab.n_countries and len(set(counts.tolist())) == 1
    for c in np.unique(facts.city):
        here = facts.city == c
        assert facts.composed_trained[here].any() == facts.bridge_seen[here].all()
    sent = _sentences(R.make_corpus(facts))
    v = facts.vocab
    for p, c, y, comp in zip(facts.persons.tolist(), facts.city.tolist(), country.tolist(),
                             facts.composed_trained.tolist()):
        assert (R.BOS, *p, v.R1, c) in sent and (R.BOS, c, v.R2, y) in sent
        assert ((R.BOS, *p, v.R12, y) in sent) == comp


def test_same_seed_same_facts_and_bad_inputs():
    a, b = R.make_facts(5, 10), R.make_facts(5, 10)
    assert np.array_equal(a.names, b.names) and np.array_equal(a.descs, b.descs)
    assert not np.array_equal(R.make_facts(6, 10).descs, a.descs)
    with pytest.raises(ValueError, match="composed_per_city"):
        R.make_facts(0, 10, persons_per_city=3, composed_per_city=3)
    with pytest.raises(ValueError, match="n_per_group"):
        R.make_facts(0, -1)
    with pytest.raises(ValueError, match="unseen_cities_per_country"):
        R.make_facts(0, 10, cities_per_country=2, unseen_cities_per_country=2)
    with pytest.raises(ValueError, match="k >= 2"):
        R.EpisodeSampler([a], [0], 1)


@pytest.mark.parametrize("mix,wanted", [((0, 1, 0), {"R2"}), ((1, 0, 1), {"R1", "R12"})])
def test_twohop_mix_chooses_the_kinds_of_question(facts, mix, wanted):
    v = facts.vocab
    sampler = R.EpisodeSampler([facts], [3], 2, twohop_share=1.0, questions=3, twohop_mix=mix)
    tokens, mask = sampler.sample(100)
    rel = {v.R1: "R1", v.R2: "R2", v.R12: "R12"}
    asked = set()
    for seq, mk in zip(tokens[0].tolist(), mask[0].tolist()):
        _check_episode(seq, [t for t, m in zip(seq, mk) if m], v, 2)   # answers still right
        answers = [i for i, m in enumerate(mk) if m]
        asked |= {rel[seq[i - 1]] for i in answers}       # the relation just before each answer
    assert asked == wanted
    for bad in ((1, 1), (1, -1, 1), (0, 0, 0)):
        with pytest.raises(ValueError, match="twohop_mix"):
            R.EpisodeSampler([facts], [3], 2, twohop_mix=bad)


def test_episodes_state_their_facts_and_ask_about_one(facts):
    v = facts.vocab
    names, descs = facts.ctx_names[:3], facts.ctx_descs[:3]
    tpls = list(v.pool("tpl"))
    prompt, ans, cands, j = R.curse_episode(names, descs, tpls, False, True, 2, 1, [0, 1, 1])
    assert prompt[:6] == [R.BOS, *descs[0], tpls[0], *names[0]]
    assert prompt[-3:] == [*names[2], tpls[1]] and ans == list(descs[2])
    assert cands == [list(d) for d in descs] and j == 2
    order = np.array([3, 0, 2, 1])
    cities, countries = np.array(list(v.pool("ccity"))[:2]), np.array(list(v.pool("country"))[:2])
    p, a, c, j = R.twohop_episode(facts.ctx_persons[:2], cities, countries, order, v, "composed", 1)
    assert p[1:4] == [cities[1], v.R2, countries[1]] and p[-3:] == [*facts.ctx_persons[1], v.R12]
    assert a == [countries[1]] and c == [[countries[0]], [countries[1]]] and j == 1


def test_context_queries_point_at_the_right_answers(facts):
    q = R.context_queries(facts, seed=3, k=3)
    assert set(q) == {("p2d", "same"), ("p2d", "reversed"), ("d2p", "same"), ("d2p", "reversed"),
                      ("twohop", "hop1"), ("twohop", "hop2"), ("twohop", "composed"),
                      ("twohop", "external")}
    name_of = {tuple(n): tuple(d) for n, d in zip(facts.ctx_names.tolist(), facts.ctx_descs.tolist())}
    desc_of = {d: n for n, d in name_of.items()}
    prompts, cands, correct, items, _ = q[("p2d", "reversed")]
    for pr, ca, co in zip(prompts, cands, correct):
        asked = tuple(pr[-3:-1])
        assert tuple(ca[co]) == desc_of[asked]                  # description -> its name
        assert tuple(pr[-3:-1]) in desc_of and len(ca) == 3
    # every fact of a curse test prompt is written in the question's template
    for key in (("p2d", "same"), ("p2d", "reversed"), ("d2p", "same"), ("d2p", "reversed")):
        for pr in q[key][0]:
            assert {pr[3 + 5 * i] for i in range(3)} == {pr[-1]}
    prompts, cands, correct, _, _ = q[("twohop", "external")]
    assert (prompts[:, -1] == facts.vocab.R1).all() and cands.shape[1:] == (3, 1)


def test_normalised_rank_and_rank_among_rivals_match_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (3, 7, 9), generator=g).float()  # many ties
    correct = torch.randint(0, 9, (3, 7), generator=g)
    got = R.normalised_rank(scores, correct)
    for idx in np.ndindex(3, 7):
        s = scores[idx].numpy()
        c = s[correct[idx]]
        assert got[idx].item() == pytest.approx(((s > c).sum() + ((s == c).sum() - 1) / 2) / 8)
    with pytest.raises(ValueError):
        R.normalised_rank(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    # among k random rivals: same expectation as among all candidates
    big = torch.randn(4000, 30, generator=g)
    corr = torch.zeros(4000, dtype=torch.long)
    big[:, 0] += 0.7
    full = R.normalised_rank(big, corr).mean().item()
    sub = R.rank_among_rivals(big, corr, 3, torch.Generator().manual_seed(1)).mean().item()
    assert sub == pytest.approx(full, abs=0.02)
    assert torch.equal(R.rank_among_rivals(big[:5, :3], corr[:5], 3, g), R.normalised_rank(big[:5, :3], corr[:5]))
    with pytest.raises(ValueError, match="k must"):
        R.rank_among_rivals(big, corr, 1, g)


class LookupModel:
    """A hand-made 'model' on (M, B, T) tokens: after a prompt whose last two entity tokens are
    a key of ``table`` (followed by one connective token), it puts all its mass on the first
    answer token, then on the second; uniform otherwise."""

    def __init__(self, table: dict, vocab_size: int):
        self.table, self.V = table, vocab_size

    def __call__(self, tokens):
        M, B, T_ = tokens.shape
        out = torch.zeros(M, B, T_, self.V)
        for m in range(M):
            for b in range(B):
                seq = tokens[m, b].tolist()
                for t in range(T_):
                    for k in (0, 1):
                        if t - k - 2 >= 0:
                            key = tuple(seq[t - k - 2:t - k])
                            ans = self.table.get(key)
                            if ans is not None and tuple(seq[t - k + 1:t + 1]) == tuple(ans[:k]):
                                out[m, b, t, ans[k]] = 50.0
        return out


def test_evaluation_scores_a_hand_made_model(facts):
    # knows every fact of the weights only in the name -> description direction
    table = {tuple(n): tuple(d) for n, d in zip(facts.names.tolist(), facts.descs.tolist())}
    model = LookupModel(table, facts.vocab.size)
    qs = [q for q in R.build_queries([facts]) if q.meta.experiment.iloc[0] == "curse"]
    df = R.summarise(R.evaluate(model, qs, seeds=[3], k=3)).set_index("condition")
    for cond in ("p2d/same", "both/forward"):
        assert df.loc[cond, "accuracy"] == 1.0 and df.loc[cond, "rank"] == 0.0
        assert df.loc[cond, "rank_k"] == 0.0
    for cond in ("p2d/reversed", "both/backward", "d2p/same"):
        assert df.loc[cond, "rank_lift"] == pytest.approx(0.0)       # uniform: every candidate ties
        assert df.loc[cond, "rank_lift_k"] == pytest.approx(0.0)
    assert df.loc["d2p/reversed", "accuracy"] == 1.0
    assert (df["n_candidates"] == 12).all()


def test_external_two_hop_answers_on_the_models_own_first_step(facts):
    v = facts.vocab
    q = R.build_queries([facts], context_k=2, seeds=[3], curse=False, twohop=False)
    ext = [s for s in q if s.external][0]

    def read(facts_part):
        """Answers to "p2 R1" and "city R2" from the facts written in one prompt."""
        rows, i = {}, 0
        while i < len(facts_part):
            if facts_part[i] in v.pool("ccity"):               # "city R2 country"
                rows[(facts_part[i], v.R2)] = facts_part[i + 2]
                i += 3
            else:                                              # "p1 p2 R1 city"
                rows[(facts_part[i + 1], v.R1)] = facts_part[i + 3]
                i += 4
        return rows

    class Reader:
        """Answers hop 1 and hop 2 by reading its own prompt (14 fact tokens after BOS)."""

        def __call__(self, tokens):
            M, B, T_ = tokens.shape
            out = torch.zeros(M, B, T_, v.size)
            for b in range(B):
                seq = tokens[0, b].tolist()
                ans = read(seq[1:15]).get(tuple(seq[-2:]))
                if ans is not None:
                    out[0, b, -1, ans] = 50.0
            return out

    df = R.summarise(R.evaluate(Reader(), [ext], seeds=[3], k=2))
    assert df.condition.tolist() == ["context/twohop/external"]
    assert df.accuracy.iloc[0] == 1.0 and df.rank_lift_k.iloc[0] == 0.5


def test_training_learns_seen_facts_and_is_reproducible():
    kw = dict(seeds=[0], n_per_group=6, n_templates=2, n_countries=2, cities_per_country=2,
              persons_per_city=3, composed_per_city=1, d_model=32, n_layers=1, n_heads=2,
              cfg=T.TrainConfig(steps=300, batch_size=32, lr=1e-2, warmup=10, log_every=50),
              context_k=2, context_batch=4, n_context_persons=4, n_episode=12, n_ctx_cities=2,
              pretrain_cfg=T.TrainConfig(steps=5, lr=1e-2, warmup=1, log_every=1))
    a = R.run_experiment(**kw)
    b = R.run_experiment(**kw)
    pd.testing.assert_frame_equal(a["summary"], b["summary"])
    s = a["summary"].set_index("condition")
    assert s.loc["p2d/same", "rank"] < 0.2 and s.loc["d2p/same", "rank"] < 0.2
    assert {"pretraining", "facts"} == set(a["log"].phase)
    assert "context/p2d/reversed" in s.index and a["design"].n_bases.iloc[0] == 1
    long = R.run_twohop_long([0, 1], n_countries=2, cities_per_country=3, unseen_cities_per_country=1,
                             persons_per_city=3, composed_per_city=1, d_model=16, n_layers=1,
                             n_heads=2, cfg=T.TrainConfig(steps=20, batch_size=8, log_every=10),
                             checkpoint_every=10)
    assert set(long["curve"].step) == {0, 10, 20}
    assert not long["summary"].condition.str.startswith(("p2d", "context")).any()


# ---------------------------------------------------------------- verdict rules
def test_no_inference_verdict_rule():
    assert A.no_inference_verdict(-0.03, 0.04, 1.0).label == "supports"
    assert A.no_inference_verdict(0.06, 0.2, 1.0).label == "contradicts"
    assert A.no_inference_verdict(0.01, 0.09, 1.0).label == "mixed"
    assert A.no_inference_verdict(-0.3, -0.1, 1.0).label == "supports"   # below chance: no inference
    assert A.no_inference_verdict(0.0, 0.05, 1.0).label == "mixed"       # touching the margin
    assert A.no_inference_verdict(0.05, 0.1, 1.0).label == "mixed"
    v = A.no_inference_verdict(-0.01, 0.01, 0.5)
    assert v.label == "mixed" and "controls failed" in v.reason
    with pytest.raises(ValueError):
        A.no_inference_verdict(0.2, 0.1, 1.0)
    with pytest.raises(ValueError):
        A.no_inference_verdict(float("nan"), 0.1, 1.0)


def test_fieller_ratio_is_the_set_of_ratios_a_paired_t_test_cannot_reject():
    from countingargs.stats import t_interval

    rng = np.random.default_rng(0)
    c = 0.4 + 0.02 * rng.standard_normal(6)
    w = 0.1 + 0.03 * rng.standard_normal(6)
    ratio, lo, hi = A.fieller_ratio(w, c)
    assert ratio == pytest.approx(w.mean() / c.mean())
    for rho in np.linspace(lo - 0.2, hi + 0.2, 81):
        _, a, b = t_interval(w - rho * c)
        inside = a <= 0 <= b
        if abs(rho - lo) > 1e-3 and abs(rho - hi) > 1e-3:
            assert inside == (lo <= rho <= hi), rho
    # a denominator not clearly away from zero gives an unbounded interval
    _, lo, hi = A.fieller_ratio(w, np.array([0.1, -0.1, 0.05, -0.05, 0.02, -0.02]))
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        A.fieller_ratio([1.0], [1.0])


def test_ratio_verdict_every_outcome():
    c = np.array([0.40, 0.42, 0.38, 0.41, 0.39])
    assert A.ratio_verdict([0.0, 0.01, -0.01, 0.0, 0.02], c, 1.0, 1.0).label == "supports"
    assert A.ratio_verdict([0.40, 0.38, 0.41, 0.39, 0.40], c, 1.0, 1.0).label == "contradicts"
    assert A.ratio_verdict(0.5 * c + np.array([0.1, -0.1, 0.05, -0.05, 0.0]), c, 1.0, 1.0).label == "mixed"
    # exactly at the threshold in every seed: a zero-width interval at 0 touches both sides
    assert A.ratio_verdict(0.5 * c, c, 1.0, 1.0).label == "mixed"
    v = A.ratio_verdict([0.0] * 5, c, 0.5, 1.0)
    assert v.label == "mixed" and "weights controls failed" in v.reason
    v = A.ratio_verdict([0.3] * 5, [0.0] * 5, 1.0, 0.5)
    assert v.label == "mixed" and "prompt controls failed" in v.reason
    # the prompt route works but infers nothing, the weights do: the ratio is above threshold
    assert A.ratio_verdict([0.2, 0.25, 0.22, 0.21, 0.23], [0.0, 0.01, -0.01, 0.0, 0.0], 1.0, 1.0).label \
        == "contradicts"
    with pytest.raises(ValueError):
        A.ratio_verdict([0.1] * 5, c, float("nan"), 1.0)


# ---------------------------------------------------------------- analysis on synthetic tables
def _summary(lifts: dict, acc: dict | None = None, seeds=range(5), jitter=0.002):
    """A summary table with the given mean rank lift per condition (all conditions the analysis
    reads; controls at lift 0.5 and accuracy 1 unless overridden)."""
    conds = {c for _, t, k in A.TESTS for c in t + k}
    conds |= {c for _, w, wc, p, pc in A.RATIOS for c in w + wc + p + pc}
    conds |= {"context/twohop/composed", "twohop/hop1-heldout-unseen-city"}
    rows = []
    for s in seeds:
        for c in sorted(conds):
            lift = lifts.get(c, 0.5) + jitter * s
            rows.append({"seed": s, "condition": c, "accuracy": (acc or {}).get(c, 1.0),
                         "top1": 0.5, "rank": 0.5 - lift, "rank_k": 0.5 - lift,
                         "rank_lift": lift, "rank_lift_k": lift, "chance_top1": 0.1,
                         "n_queries": 10, "n_candidates": 10})
    return pd.DataFrame(rows)


PARAMS = dict(margin=0.05, control_min=0.9, ratio_threshold=0.5,
              n_per_group=100, n_templates=4, n_countries=10, cities_per_country=4,
              unseen_cities_per_country=2, n_layers=2, d_model=64, n_heads=4, lr=0.003,
              batch_size=128, steps=2000, context_k=2, context_batch=8, ratio_steps=1200,
              long_steps=4000, long_batch=64)


def _tables(summary, summary_long, ratio=None):
    design = pd.DataFrame([{"seed": s, "n_persons": 240, "n_composed": 80, "n_heldout_seen": 40,
                            "n_heldout_unseen": 120, "n_params": 1000, "corpus_size": 3840,
                            "vocab_size": 300, "n_context_facts": 100, "n_context_persons": 100,
                            "n_episode_entities": 500, "pretrain_steps": 10, "n_bases": 1,
                            "context_questions": 1, "pretrain_batch": 256, "pretrain_lr": 0.001,
                            "context_twohop_share": 0.5}
                           for s in range(5)])
    summary_ratio = summary if ratio is None else ratio
    design_long = pd.DataFrame([{"seed": s, "n_persons": 240, "n_cities": 60, "n_bridges_seen": 40,
                                 "n_composed": 120, "corpus_size": 600} for s in range(5)])
    ck = summary.assign(step=0)
    ck = pd.concat([ck, summary.assign(step=1000), summary.assign(step=2000)], ignore_index=True)
    ckl = pd.concat([summary_long.assign(step=0), summary_long.assign(step=4000)], ignore_index=True)
    return {"summary": summary, "summary_long": summary_long, "checkpoints": ck,
            "summary_ratio": summary_ratio, "design_ratio": design,
            "checkpoints_long": ckl, "design": design, "design_long": design_long,
            "paper_numbers": R.paper_numbers(), "literature": R.literature()}


def test_analyse_produces_every_outcome_and_six_ledger_rows():
    lifts = {"p2d/reversed": 0.0, "d2p/reversed": 0.0,                      # premise supported
             "twohop/composed-heldout-seen-city": 0.25,
             "twohop/composed-heldout-unseen-city": 0.2,                    # contradicted
             "context/p2d/reversed": 0.4, "context/d2p/reversed": 0.4,
             "context/twohop/external": 0.4}
    long = _summary({"twohop/composed-heldout-seen-city": 0.3,
                     "twohop/composed-heldout-unseen-city": 0.03}, jitter=0.01)  # straddles 0.05
    f = A.analyse(_tables(_summary(lifts), long), PARAMS)
    v = f.tables["verdicts"].set_index(["run", "test"])["verdict"]
    assert v[("main", "reversal")] == "supports"
    assert v[("main", "two-hop, unseen bridge")] == "contradicts"
    assert v[("long", "two-hop, unseen bridge")] == "mixed"
    r = f.tables["ratios"].set_index("test")
    assert r.loc["reversal", "verdict"] == "supports" and r.loc["reversal", "ratio"] < 0.1
    assert r.loc["two-hop, seen bridge", "verdict"] == "contradicts"          # 0.25 / 0.4 > 0.5
    led = f.tables["ledger"]
    assert len(led) == 6 and led.id.is_unique and led.version.str.len().min() > 10
    assert set(led.verdict) == {"supports", "contradicts", "mixed"}
    assert f.glue["verdict_ratio_rev"] == "supports" and "95% interval" in f.glue["ratio_rev"]
    assert f.glue["phrase_rev"].startswith("lies inside")
    assert "verdict" not in f.glue                                            # no combined label


def test_analysis_voids_tests_whose_lowest_control_failed_and_refuses_gaps():
    lifts = {"p2d/reversed": 0.0, "d2p/reversed": 0.0}
    acc = {"context/p2d/same": 0.95}
    s = _summary(lifts, acc)
    s.loc[(s.condition == "context/p2d/same") & (s.seed == 2), "accuracy"] = 0.5   # one seed failed
    s.loc[(s.condition == "p2d/same") & (s.seed == 4), "accuracy"] = 0.8
    f = A.analyse(_tables(_summary(lifts), _summary({}), ratio=s), PARAMS)
    assert f.tables["ratios"].set_index("test").loc["reversal", "verdict"] == "mixed"
    f = A.analyse(_tables(s, _summary({})), PARAMS)
    assert "controls failed" in f.tables["ratios"].set_index("test").loc["reversal", "reason"]
    assert f.tables["verdicts"].iloc[0].verdict == "mixed"                   # mean 0.96, lowest 0.8
    with pytest.raises(ValueError, match="lacks the conditions"):
        A.verdict_table(s[s.condition != "p2d/reversed"])
    bad = s.copy()
    bad.loc[0, "rank_lift"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        A.by_seed(bad, [bad.condition.iloc[0]], "rank_lift")
    with pytest.raises(ValueError, match="needs the table"):
        A.analyse({"summary": s}, PARAMS)


def test_a_ratio_with_an_unbounded_interval_is_not_measured_in_the_ledger():
    lifts = {"p2d/reversed": 0.02, "d2p/reversed": 0.02,
             "context/p2d/reversed": 0.4, "context/d2p/reversed": 0.4}
    f = A.analyse(_tables(_summary(lifts), _summary({})), PARAMS)
    rt = f.tables["ratios"].copy()
    led = A.ledger_rows(f.tables["verdicts"], rt, 0.5)
    bounded = {r["id"]: r for r in led}["05-ratio-reversal"]
    assert np.isfinite(bounded["effect"])                   # a bounded ratio keeps its number
    rt.loc[rt.test == "reversal", ["ratio_hi", "verdict"]] = [np.nan, "mixed"]   # prompt lift ~ 0
    row = {r["id"]: r for r in A.ledger_rows(f.tables["verdicts"], rt, 0.5)}["05-ratio-reversal"]
    assert row["verdict"] == "mixed" and np.isnan(row["effect"]) and np.isnan(row["effect_hi"])


# ---------------------------------------------------------------- chunked trainings
_CHUNK_KW = dict(n_per_group=4, n_templates=2, n_countries=2, cities_per_country=2,
                 persons_per_city=3, composed_per_city=1, d_model=16, n_layers=1, n_heads=2,
                 context_k=2, context_batch=2, n_context_persons=3, n_episode=8, n_ctx_cities=2,
                 checkpoint_every=4)
_LONG_KW = dict(n_countries=2, cities_per_country=3, unseen_cities_per_country=1,
                persons_per_city=3, composed_per_city=1, d_model=16, n_layers=1, n_heads=2,
                checkpoint_every=5)


def _chunked_runs(**where):
    """The ratio experiment (a shared pretrained base, episodes, checkpoints) and the long
    two-hop run on three seeds, as CSV text and parameter bytes."""
    res = R.run_experiment([0, 1, 2], cfg=T.TrainConfig(steps=8, batch_size=8, log_every=3),
                           pretrain_cfg=T.TrainConfig(steps=3, log_every=1), **_CHUNK_KW, **where)
    long = R.run_twohop_long([0, 1, 2], cfg=T.TrainConfig(steps=10, batch_size=8, log_every=4),
                             **_LONG_KW, **where)
    out = {f"{tag}/{k}": r[k].to_csv() for tag, r in (("ratio", res), ("long", long))
           for k in ("log", "per_query", "summary", "curve", "design")}
    for tag, r in (("ratio", res), ("long", long)):
        out[f"{tag}/model"] = b"".join(p.detach().numpy().tobytes() for p in r["model"].parameters())
        out[f"{tag}/facts"] = b"".join(f.names.tobytes() + f.persons.tobytes() for f in r["facts"])
    return out


@pytest.fixture(scope="module")
def chunk_ref():
    return _chunked_runs(scheduler="")


def test_chunk_layout_does_not_change_the_results(chunk_ref, monkeypatch):
    assert len(R._seed_groups([0, 1, 2], None, "")) == 1
    assert len(R._seed_groups([0, 1, 2], None, "local:2")) == 3
    for per in (1, 2):
        got = _chunked_runs(scheduler="", seeds_per_chunk=per)
        for k, v in chunk_ref.items():
            assert got[k] == v, (per, k)
    # chunks in two threads at once: the same tables, and the shared base pretrained once
    calls = []
    pretrain = R.pretrain_on_prompts
    monkeypatch.setattr(R, "pretrain_on_prompts", lambda *a: calls.append(1) or pretrain(*a))
    R._BASES.clear()
    got = _chunked_runs(scheduler="", seeds_per_chunk=1, workers=2)
    assert len(calls) == 1
    for k, v in chunk_ref.items():
        assert got[k] == v, ("threads", k)


def test_chunks_on_local_cluster_1_and_2_workers_match_in_process(chunk_ref, workers_env):
    from countingargs import chunks

    for sched in ("local:1", "local:2"):
        got = _chunked_runs(scheduler=sched)     # one seed per chunk on a cluster
        for k, v in chunk_ref.items():
            assert got[k] == v, (sched, k)
    rows = {(h["name"], h["scheduler"], h["workers"]) for h in chunks.history()}
    assert {("ch05-ratio", "local:1", 1), ("ch05-long", "local:2", 2)} <= rows


def test_pretrain_settings_name_what_is_wrong():
    assert R.pretrain_settings([3000, 256, 0.001]) == (3000, 256, 0.001)
    assert R.pretrain_settings([0, 1, 1]) == (0, 1, 1.0)
    for bad, match in [([3000, 256], "must be"), ("abc", "must be"), ([-1, 256, 0.001], "steps"),
                       ([1.5, 256, 0.001], "steps"), ([10, 0, 0.001], "episodes per step"),
                       ([10, 8, 0], "learning rate"), ([10, 8, True], "learning rate")]:
        with pytest.raises(ValueError, match=match):
            R.pretrain_settings(bad)


def test_pretraining_checkpoints_see_the_model_being_trained(facts):
    seen = []
    cfg = T.TrainConfig(steps=5, lr=1e-2, warmup=1, log_every=1)
    args = (facts, [0], cfg, 2, 4, 0.5, 2, 16, 1, 2)
    base, log = R.pretrain_on_prompts(
        *args, checkpoint=lambda m, step: seen.append((step, m.w["tok"].detach().clone())),
        checkpoint_every=2)
    assert [s for s, _ in seen] == [2, 4, 5]
    assert torch.equal(seen[-1][1], base.w["tok"]) and not torch.equal(seen[0][1], seen[-1][1])
    # checkpoints do not change the training
    plain, _ = R.pretrain_on_prompts(*args)
    assert torch.equal(plain.w["tok"], base.w["tok"])
