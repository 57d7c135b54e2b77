"""Unit tests for countingargs.reversal (chapter 5: the reversal curse)."""
import numpy as np
import pandas as pd
import pytest
import torch

from countingargs.chapters.ch05_reversal import experiment as R
from countingargs.nets import transformer as T
from countingargs.chapters.ch05_reversal import analysis as A


@pytest.fixture(scope="module")
def facts():
    return R.make_facts(seed=3, n_per_group=12, n_templates=3, n_countries=3,
                        cities_per_country=2, persons_per_city=4, composed_per_city=2)


def _sentences(corpus):
    return {tuple(int(t) for t in row if t != R.PAD) for row in corpus}


# ---------------------------------------------------------------- data generator
def test_groups_are_disjoint_and_balanced(facts):
    n = len(facts.names)
    assert np.bincount(facts.group).tolist() == [12, 12, 12]
    # every entity belongs to exactly one fact (hence one group)
    assert len({tuple(x) for x in facts.names}) == n
    assert len({tuple(x) for x in facts.descs}) == n
    # two-hop persons never coincide with curse names
    assert not ({tuple(x) for x in facts.persons} & {tuple(x) for x in facts.names})
    # token pools do not overlap between names and descriptions
    v = facts.vocab
    assert set(facts.names[:, 0]) <= set(v.pool("first")) and set(facts.names[:, 1]) <= set(v.pool("last"))
    assert set(facts.descs[:, 0]) <= set(v.pool("d1")) and set(facts.descs[:, 1]) <= set(v.pool("d2"))


def test_corpus_contains_each_group_only_in_its_directions(facts):
    sent = _sentences(R.make_corpus(facts))
    for nm, ds, g in zip(facts.names.tolist(), facts.descs.tolist(), facts.group.tolist()):
        for t in facts.vocab.pool("tpl"):
            fwd = (R.BOS, *nm, t, *ds) in sent
            bwd = (R.BOS, *ds, t, *nm) in sent
            assert fwd == (g in (0, 2)), (g, "forward")
            assert bwd == (g in (1, 2)), (g, "backward")
    # no sentence pairs a name with a description from another fact
    pairs = {(tuple(n), tuple(d)) for n, d in zip(facts.names.tolist(), facts.descs.tolist())}
    for s in sent:
        if len(s) == 6:
            a, b = s[1:3], s[4:6]
            assert (a, b) in pairs or (b, a) in pairs


def test_twohop_is_balanced_and_composition_held_out(facts):
    country = facts.country()
    # in every kind of person, every country occurs equally often: base rates are uninformative
    for kind in (facts.composed_trained, ~facts.composed_trained & facts.bridge_seen,
                 ~facts.bridge_seen):
        assert kind.any()
        counts = np.unique(country[kind], return_counts=True)[1]
        assert len(counts) == facts.vocab.n_countries and len(set(counts.tolist())) == 1
    # an unseen bridge city is never the bridge of a trained composition; a seen one always is
    for c in np.unique(facts.city):
        here = facts.city == c
        assert facts.composed_trained[here].any() == facts.bridge_seen[here].all()
        assert facts.bridge_seen[here].all() or not facts.bridge_seen[here].any()
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
        R.make_facts(0, 0)
    with pytest.raises(ValueError, match="unseen_cities_per_country"):
        R.make_facts(0, 10, cities_per_country=2, unseen_cities_per_country=2)


# ---------------------------------------------------------------- evaluation
class LookupModel:
    """A hand-made 'model': after a prompt it puts all mass on a fixed answer when it knows the
    fact in that direction and is uniform otherwise. Works on (M, B, T) token tensors."""

    def __init__(self, table: dict, vocab_size: int):
        self.table, self.V = table, vocab_size  # table: prompt tuple (without template) -> answer

    def __call__(self, tokens):
        M, B, T = tokens.shape
        out = torch.zeros(M, B, T, self.V)
        for m in range(M):
            for b in range(B):
                seq = tokens[m, b].tolist()
                for t in range(T):
                    prefix = tuple(seq[:t + 1])
                    for k in (0, 1):  # answer position k after a 4-token prompt
                        if len(prefix) == 4 + k:
                            key = prefix[1:3]
                            ans = self.table.get(key)
                            if ans is not None and tuple(prefix[4:]) == tuple(ans[:k]):
                                out[m, b, t, ans[k]] = 50.0
        return out


def test_evaluation_scores_a_hand_made_model(facts):
    # the model knows every fact only in the name -> description direction
    table = {tuple(n): tuple(d) for n, d in zip(facts.names.tolist(), facts.descs.tolist())}
    model = LookupModel(table, facts.vocab.size)
    qs = [q for q in R.build_queries([facts]) if q.meta.experiment.iloc[0] == "curse"]
    df = R.summarise(R.evaluate(model, qs, seeds=[3])).set_index("condition")
    for cond in ("p2d/same", "both/forward"):
        assert df.loc[cond, "accuracy"] == 1.0 and df.loc[cond, "top1"] == 1.0
        assert df.loc[cond, "rank"] == 0.0
    for cond in ("p2d/reversed", "both/backward", "d2p/same"):
        # uniform output: every candidate ties, so the rank is exactly chance
        assert df.loc[cond, "rank"] == pytest.approx(0.5)
        assert df.loc[cond, "rank_lift"] == pytest.approx(0.0)
    assert df.loc["d2p/reversed", "accuracy"] == 1.0
    assert (df["n_candidates"] == 12).all()


def test_normalised_rank_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (3, 7, 9), generator=g).float()  # many ties
    correct = torch.randint(0, 9, (3, 7), generator=g)
    got = R.normalised_rank(scores, correct)
    for idx in np.ndindex(3, 7):
        s = scores[idx].numpy()
        c = s[correct[idx]]
        # mean position (0-based) of the correct candidate among its ties, over C - 1
        expected = ((s > c).sum() + ((s == c).sum() - 1) / 2) / 8
        assert got[idx].item() == pytest.approx(expected)
    best = torch.tensor([[3.0, 1.0, 2.0]])
    assert R.normalised_rank(best, torch.tensor([0])).item() == 0.0
    assert R.normalised_rank(best, torch.tensor([1])).item() == 1.0
    with pytest.raises(ValueError):
        R.normalised_rank(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))


def test_prefix_scoring_equals_full_sequence_scoring(facts):
    model = R.BatchedTransformer(2, facts.vocab.size, d_model=16, n_layers=1, n_heads=2, seeds=[1, 2]).eval()
    q = R.build_queries([facts, R.make_facts(4, 12, 3, 3, 2, 4, 2)])[1]
    assert q.candidates.shape[-1] == 2
    got = T.score_candidates(model, q.prompts, q.candidates)
    M, Q, C, La = q.candidates.shape
    seqs = torch.cat([q.prompts[:, :, None].expand(M, Q, C, -1), q.candidates], -1).reshape(M, Q * C, -1)
    with torch.no_grad():
        lp = torch.log_softmax(model(seqs), -1)
    Tp = q.prompts.shape[-1]
    brute = sum(lp[:, :, Tp - 1 + j].gather(-1, seqs[:, :, Tp + j:Tp + j + 1]).squeeze(-1)
                for j in range(La)).view(M, Q, C)
    assert torch.allclose(got, brute, atol=1e-5)


# ---------------------------------------------------------------- batched model
def test_batched_models_are_independent_and_causal(facts):
    corpus = torch.from_numpy(np.stack([R.make_corpus(facts)] * 2))
    cfg = T.TrainConfig(steps=6, batch_size=16, lr=1e-2, warmup=2, log_every=1)
    both = R.BatchedTransformer(2, facts.vocab.size, 16, 1, 2, seeds=[7, 9])
    alone = R.BatchedTransformer(1, facts.vocab.size, 16, 1, 2, seeds=[9])
    assert torch.equal(both.w["tok"][1], alone.w["tok"][0])
    T.train_lm(both, corpus, cfg, seeds=[7, 9])
    T.train_lm(alone, corpus[1:], cfg, seeds=[9])
    for k in both.w:
        assert torch.allclose(both.w[k][1], alone.w[k][0], atol=1e-6), k
    assert not torch.allclose(both.w["tok"][0], both.w["tok"][1])
    # causality: changing the last token leaves earlier logits unchanged
    x = corpus[:, :4].clone()
    y = x.clone()
    y[:, :, -1] = (y[:, :, -1] + 1) % facts.vocab.size
    with torch.no_grad():
        assert torch.allclose(both(x)[:, :, :-1], both(y)[:, :, :-1])
    with pytest.raises(ValueError, match="shape"):
        both(x[0])


def test_training_learns_seen_facts_and_log_is_reproducible():
    f = R.make_facts(0, 6, 2, 2, 2, 3, 1)
    kw = dict(seeds=[0], n_per_group=6, n_templates=2, n_countries=2, cities_per_country=2,
              persons_per_city=3, composed_per_city=1, d_model=32, n_layers=1, n_heads=2,
              cfg=R.TrainConfig(steps=150, batch_size=32, lr=1e-2, warmup=10, log_every=50))
    a = R.run_experiment(**kw)
    b = R.run_experiment(**kw)
    pd.testing.assert_frame_equal(a["summary"], b["summary"])
    s = a["summary"].set_index("condition")
    assert s.loc["p2d/same", "rank"] < 0.2 and s.loc["d2p/same", "rank"] < 0.2
    assert a["log"].loss.iloc[-1] < a["log"].loss.iloc[0]
    assert len(f.names) == 18


# ---------------------------------------------------------------- verdict rule
def test_no_inference_verdict_rule():
    assert A.no_inference_verdict(-0.03, 0.04, 1.0).label == "supports"
    assert A.no_inference_verdict(0.06, 0.2, 1.0).label == "contradicts"
    assert A.no_inference_verdict(0.01, 0.09, 1.0).label == "mixed"
    # below chance is still "no inference"
    assert A.no_inference_verdict(-0.3, -0.1, 1.0).label == "supports"
    # failed controls void the test, whatever the lift
    v = A.no_inference_verdict(-0.01, 0.01, 0.5)
    assert v.label == "mixed" and "controls failed" in v.reason
    with pytest.raises(ValueError):
        A.no_inference_verdict(0.2, 0.1, 1.0)


def test_verdict_table_reads_the_right_conditions():
    conds = {c for _, t, k in A.TESTS for c in t + k}
    rows = []
    for seed in range(5):
        for c in sorted(conds):
            test = c.endswith("reversed") or "composed-heldout" in c
            lift = (0.3 if "unseen" in c else 0.0) if test else 0.5
            rows.append({"seed": seed, "condition": c, "accuracy": 0.0 if test else 1.0,
                         "top1": 0.1, "rank_lift": lift + 0.001 * seed, "chance_top1": 0.1})
    vt = A.verdict_table(pd.DataFrame(rows)).set_index("test")
    assert vt.loc["reversal", "verdict"] == "supports"
    assert vt.loc["two-hop, seen bridge", "verdict"] == "supports"
    assert vt.loc["two-hop, unseen bridge", "verdict"] == "contradicts"
    assert vt.loc["reversal", "rank_lift"] == pytest.approx(0.002)
    assert (vt["control_accuracy"] == 1.0).all()
    with pytest.raises(ValueError, match="lacks the conditions"):
        A.verdict_table(pd.DataFrame(rows[:3]))


def test_twohop_queries_point_at_the_right_answers(facts):
    v = facts.vocab
    for which, answer in [("hop1", facts.city), ("hop2", facts.country()), ("composed", facts.country())]:
        prompts, cands, correct, kind = R.twohop_queries(facts, which)
        assert np.array_equal(cands[np.arange(len(correct)), correct, 0], answer)
        assert np.array_equal(kind == 0, facts.composed_trained)
    prompts, _, _, _ = R.twohop_queries(facts, "composed")
    assert (prompts[:, -1] == v.R12).all() and np.array_equal(prompts[:, 1:3], facts.persons)
    with pytest.raises(ValueError, match="which"):
        R.twohop_queries(facts, "hop3")
