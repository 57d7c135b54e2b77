"""The batched transformer (nets.transformer): independence of the models, causality, the cached
scoring of extensions, replication, and the training loop's second batch."""
import numpy as np
import pytest
import torch

from countingargs.nets import transformer as T


def _tokens(M=2, B=5, T_=6, V=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, V, (M, B, T_), generator=g)


def test_batched_models_train_as_they_would_alone_and_are_causal():
    corpus = _tokens(2, 40, 6)
    cfg = T.TrainConfig(steps=6, batch_size=8, lr=1e-2, warmup=2, log_every=1)
    both = T.BatchedTransformer(2, 23, 16, 1, 2, seeds=[7, 9])
    alone = T.BatchedTransformer(1, 23, 16, 1, 2, seeds=[9])
    assert torch.equal(both.w["tok"][1], alone.w["tok"][0])
    T.train_lm(both, corpus, cfg, seeds=[7, 9])
    T.train_lm(alone, corpus[1:], cfg, seeds=[9])
    for k in both.w:
        assert torch.allclose(both.w[k][1], alone.w[k][0], atol=1e-6), k
    assert not torch.allclose(both.w["tok"][0], both.w["tok"][1])
    x = corpus[:, :4].clone()
    y = x.clone()
    y[:, :, -1] = (y[:, :, -1] + 1) % 23
    with torch.no_grad():
        assert torch.allclose(both(x)[:, :, :-1], both(y)[:, :, :-1])
    with pytest.raises(ValueError, match="shape"):
        both(x[0])
    with pytest.raises(ValueError, match="seq_len"):
        both(_tokens(2, 3, 7))


def test_extend_logp_equals_the_full_forward_pass():
    model = T.BatchedTransformer(2, 23, 16, 2, 2, seq_len=8, seeds=[1, 2]).eval()
    prompts = _tokens(2, 4, 5, seed=3)
    ext = torch.tensor([3, 7, 11]).view(1, 1, 3).expand(2, 4, 3)
    got = model.extend_logp(prompts, ext)                          # (2, 4, 3, 23)
    full = torch.cat([prompts[:, :, None].expand(2, 4, 3, 5), ext[..., None]], -1).reshape(2, 12, 6)
    with torch.no_grad():
        want = torch.log_softmax(model(full)[:, :, -1], -1).view(2, 4, 3, 23)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError):
        model.extend_logp(_tokens(2, 4, 8), ext)                    # no room for the extension


def test_score_candidates_matches_brute_force_with_and_without_the_cache():
    model = T.BatchedTransformer(2, 23, 16, 1, 2, seq_len=8, seeds=[4, 5]).eval()
    prompts = _tokens(2, 3, 4, seed=5)
    g = torch.Generator().manual_seed(6)
    cands = torch.randint(2, 23, (2, 3, 5, 2), generator=g)
    cached = T.score_candidates(model, prompts, cands)
    plain = T.score_candidates(lambda x: model(x), prompts, cands)  # no extend_logp: full passes
    M, Q, C, La = cands.shape
    seqs = torch.cat([prompts[:, :, None].expand(M, Q, C, -1), cands], -1).reshape(M, Q * C, -1)
    with torch.no_grad():
        lp = torch.log_softmax(model(seqs), -1)
    brute = sum(lp[:, :, 3 + j].gather(-1, seqs[:, :, 4 + j:5 + j]).squeeze(-1)
                for j in range(La)).view(M, Q, C)
    assert torch.allclose(cached, brute, atol=1e-5) and torch.allclose(plain, brute, atol=1e-5)


def test_replicate_copies_one_model():
    base = T.BatchedTransformer(2, 23, 16, 1, 2, seeds=[1, 2])
    rep = base.replicate(3, index=1)
    assert rep.n_models == 3
    for (name, p), q in zip(rep.named_parameters(), base.parameters()):
        for i in range(3):
            assert torch.equal(p[i], q[1]), name
    x = _tokens(3, 2, 5)
    with torch.no_grad():
        out = rep(x)
    assert torch.allclose(out[0], rep(x[[1, 0, 2]])[1], atol=1e-6)


def test_lm_loss_counts_only_masked_targets_and_pad_never():
    V = 7
    logits = torch.randn(1, 1, 4, V)
    tokens = torch.tensor([[[1, 3, 4, 0]]])
    lp = torch.log_softmax(logits[0, 0, :-1], -1)
    full = T.lm_loss(logits, tokens)
    assert full.item() == pytest.approx(-(lp[0, 3] + lp[1, 4]).item() / 2)   # PAD target skipped
    mask = torch.tensor([[[False, False, True, True]]])
    assert T.lm_loss(logits, tokens, mask).item() == pytest.approx(-lp[1, 4].item())


def _plain_lm_loss(logits, tokens, target_mask=None):
    """The loss written in the obvious way (log-softmax of the sliced logits, masked mean)."""
    tgt = tokens[:, :, 1:]
    lp = torch.log_softmax(logits[:, :, :-1], dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    mask = (tgt != T.PAD) if target_mask is None else (target_mask[:, :, 1:] & (tgt != T.PAD))
    mask = mask.float()
    return -(lp * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))


@pytest.mark.parametrize("masked", [False, True])
def test_lm_loss_gradients_are_bitwise_those_of_the_plain_formula(masked):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 64, 9, 41, generator=g)
    tokens = torch.randint(0, 41, (3, 64, 9), generator=g)       # some PAD (0) targets too
    mask = torch.rand(3, 64, 9, generator=g) < 0.3 if masked else None
    grads = []
    for fn in (T.lm_loss, _plain_lm_loss):
        x = logits.clone().requires_grad_()
        loss = fn(x, tokens, mask)
        loss.sum().backward()
        grads.append((loss.detach(), x.grad))
    assert torch.equal(grads[0][1], grads[1][1])                 # every gradient bit the same
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-6, atol=0)


def test_train_lm_with_only_a_second_batch_and_bad_inputs():
    model = T.BatchedTransformer(1, 23, 16, 1, 2, seeds=[0])
    batch = _tokens(1, 8, 6)
    mask = torch.zeros_like(batch, dtype=torch.bool)
    mask[:, :, 3:] = True
    cfg = T.TrainConfig(steps=30, batch_size=4, lr=1e-2, warmup=2, log_every=10)
    log = T.train_lm(model, None, cfg, [0], extra=lambda step: (batch, mask))
    assert {"loss", "loss_extra"} <= set(log.columns)
    assert log.loss_extra.iloc[-1] < log.loss_extra.iloc[0]
    with pytest.raises(ValueError, match="corpus, an extra"):
        T.train_lm(model, None, cfg, [0])
    with pytest.raises(ValueError, match="extra"):
        T.train_lm(model, None, cfg, [0], extra=lambda step: batch[0])
    with pytest.raises(ValueError, match="batch_size"):
        T.train_lm(model, _tokens(1, 2, 6), cfg, [0])
    with pytest.raises(ValueError, match="model slices"):
        T.train_lm(model, _tokens(2, 8, 6), cfg, [0, 1])
    assert np.isfinite(log.loss_extra).all()
