"""Many small decoder-only transformers as one batched module, their training loop, and the
two ways of reading answers out of them (candidate scoring and greedy decoding).

:class:`BatchedTransformer` holds ``M`` independent GPT-style models (pre-LayerNorm, learned
positions, causal attention, GELU MLP, untied unembedding) as stacked tensors with a leading
model axis. Model ``i`` is initialised from its own generator, so it does not depend on which
other models share the batch; the loss of a batch is the *sum* of per-model losses, so with an
element-wise optimiser (Adam, AdamW) each model trains exactly as it would alone.

:func:`train_lm` trains all models for a fixed number of steps with AdamW, a linear warm-up and
a cosine decay, each model on its own corpus slice and its own minibatch order. (It is not
:func:`countingargs.nets.train.train_until`: language models here are trained for a fixed
budget with a learning-rate schedule, not frozen at a target loss.)

Token conventions: id :data:`PAD` (0) fills sequences to a common length and is never a target;
id :data:`BOS` (1) starts every sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS = 0, 1


class BatchedTransformer(nn.Module):
    """``M`` independent decoder-only transformers as stacked tensors.

    Parameters
    ----------
    n_models: M. vocab_size: V. d_model: d (divisible by ``n_heads``). n_layers, n_heads.
    seq_len: the longest input. seeds: one integer per model; model ``i``'s initial weights come
    from a generator seeded with ``seeds[i]`` (GPT-2 style: normal(0, 0.02), residual
    projections scaled by ``1/sqrt(2 n_layers)``), so they do not depend on the other models.
    """

    def __init__(self, n_models: int, vocab_size: int, d_model: int = 64, n_layers: int = 2,
                 n_heads: int = 4, seq_len: int = 6, seeds: Sequence[int] | None = None,
                 mlp_ratio: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if min(n_models, vocab_size, d_model, n_layers, n_heads, seq_len) < 1:
            raise ValueError("all sizes must be positive")
        seeds = list(range(n_models)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != n_models:
            raise ValueError(f"got {len(seeds)} seeds for {n_models} models")
        self.n_heads, self.n_layers, self.d_model = n_heads, n_layers, d_model
        d, h, L = d_model, mlp_ratio * d_model, n_layers
        shapes = {"tok": (vocab_size, d), "pos": (seq_len, d), "unembed": (d, vocab_size)}
        for l in range(L):
            shapes.update({f"qkv{l}": (d, 3 * d), f"proj{l}": (d, d), f"fc{l}": (d, h),
                           f"out{l}": (h, d)})
        tensors: dict[str, list[torch.Tensor]] = {k: [] for k in shapes}
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            for k, shp in shapes.items():
                std = 0.02 / math.sqrt(2 * L) if k.startswith(("proj", "out")) else 0.02
                tensors[k].append(torch.randn(*shp, generator=g) * std)
        self.w = nn.ParameterDict({k: nn.Parameter(torch.stack(v)) for k, v in tensors.items()})
        M = n_models
        self.b = nn.ParameterDict()
        for l in range(L):
            self.b[f"qkv{l}"] = nn.Parameter(torch.zeros(M, 1, 3 * d))
            self.b[f"proj{l}"] = nn.Parameter(torch.zeros(M, 1, d))
            self.b[f"fc{l}"] = nn.Parameter(torch.zeros(M, 1, h))
            self.b[f"out{l}"] = nn.Parameter(torch.zeros(M, 1, d))
        self.ln = nn.ParameterDict()
        for k in [f"ln1_{l}" for l in range(L)] + [f"ln2_{l}" for l in range(L)] + ["lnf"]:
            self.ln[k + "_w"] = nn.Parameter(torch.ones(M, 1, d))
            self.ln[k + "_b"] = nn.Parameter(torch.zeros(M, 1, d))

    @property
    def n_models(self) -> int:
        return self.w["tok"].shape[0]

    @property
    def seq_len(self) -> int:
        return self.w["pos"].shape[1]

    def n_params(self) -> int:
        """Parameters of ONE model."""
        return sum(p[0].numel() for p in self.parameters())

    def replicate(self, n_models: int, index: int = 0) -> "BatchedTransformer":
        """A new batch of ``n_models`` copies of model ``index`` (e.g. one pretrained model to
        be fine-tuned with several seeds)."""
        vocab, d = self.w["unembed"].shape[2], self.d_model
        new = BatchedTransformer(n_models, vocab, d, self.n_layers, self.n_heads, self.seq_len,
                                 seeds=[0] * n_models, mlp_ratio=self.w["fc0"].shape[2] // d)
        with torch.no_grad():
            for (name, p_new), p_old in zip(new.named_parameters(), self.parameters()):
                p_new.copy_(p_old[index:index + 1].expand_as(p_new))
        return new

    def _ln(self, x: torch.Tensor, k: str) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:])
        return x * self.ln[k + "_w"] + self.ln[k + "_b"]

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[0] != self.n_models:
            raise ValueError(f"tokens must have shape (M={self.n_models}, B, T), got {tuple(tokens.shape)}")
        if tokens.shape[2] > self.seq_len:
            raise ValueError(f"sequence length {tokens.shape[2]} exceeds the model's seq_len {self.seq_len}")

    def _layers(self, x: torch.Tensor, B: int, T: int, cache: list | None = None) -> torch.Tensor:
        """The residual stream ``x (M, B*T, d)`` through every block; with ``cache`` (a list) the
        keys and values of every layer, ``(M*B, H, T, dh)`` each, are appended to it."""
        M, d, H = x.shape[0], self.d_model, self.n_heads
        for l in range(self.n_layers):
            hdn = self._ln(x, f"ln1_{l}")
            qkv = torch.baddbmm(self.b[f"qkv{l}"], hdn, self.w[f"qkv{l}"])  # (M, BT, 3d)
            qkv = qkv.view(M * B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)  # (3, MB, H, T, dh)
            if cache is not None:
                cache.append((qkv[1], qkv[2]))
            att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            att = att.permute(0, 2, 1, 3).reshape(M, B * T, d)
            x = x + torch.baddbmm(self.b[f"proj{l}"], att, self.w[f"proj{l}"])
            hdn = self._ln(x, f"ln2_{l}")
            hdn = F.gelu(torch.baddbmm(self.b[f"fc{l}"], hdn, self.w[f"fc{l}"]))
            x = x + torch.baddbmm(self.b[f"out{l}"], hdn, self.w[f"out{l}"])
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: ``(M, B, T)`` int64 (``T <= seq_len``). Returns logits ``(M, B, T, V)``."""
        self._check(tokens)
        M, B, T = tokens.shape
        m_idx = torch.arange(M).view(M, 1, 1)
        x = self.w["tok"][m_idx, tokens] + self.w["pos"][:, None, :T, :]  # (M, B, T, d)
        x = self._layers(x.reshape(M, B * T, self.d_model), B, T)
        x = self._ln(x, "lnf")
        return torch.bmm(x, self.w["unembed"]).view(M, B, T, -1)

    @torch.no_grad()
    def extend_logp(self, prompts: torch.Tensor, ext: torch.Tensor) -> torch.Tensor:
        """Next-token log-probabilities after ``prompt + u`` for every extension token ``u``,
        reusing the prompt's keys and values (one position computed per extension).

        prompts ``(M, N, Tp)``, ext ``(M, N, U)`` -> ``(M, N, U, V)``; the same numbers as
        ``log_softmax(forward(cat(prompt, u))[..., -1, :])`` up to rounding."""
        self._check(prompts)
        M, N, Tp = prompts.shape
        U = ext.shape[2]
        if ext.shape[:2] != (M, N) or Tp + 1 > self.seq_len:
            raise ValueError(f"ext must be (M={M}, N={N}, U) and Tp + 1 <= seq_len; got "
                             f"{tuple(ext.shape)}, Tp={Tp}")
        d, H = self.d_model, self.n_heads
        dh = d // H
        m_idx = torch.arange(M).view(M, 1, 1)
        x = self.w["tok"][m_idx, prompts] + self.w["pos"][:, None, :Tp, :]
        cache: list = []
        self._layers(x.reshape(M, N * Tp, d), N, Tp, cache)
        y = (self.w["tok"][m_idx, ext] + self.w["pos"][:, None, Tp:Tp + 1, :]).reshape(M, N * U, d)
        for l, (k_p, v_p) in enumerate(cache):                  # (MN, H, Tp, dh) each
            hdn = self._ln(y, f"ln1_{l}")
            qkv = torch.baddbmm(self.b[f"qkv{l}"], hdn, self.w[f"qkv{l}"])
            q, k_n, v_n = qkv.view(M * N, U, 3, H, dh).permute(2, 0, 3, 1, 4)  # (MN, H, U, dh)
            s_p = q @ k_p.transpose(-1, -2)                      # (MN, H, U, Tp)
            s_n = (q * k_n).sum(-1, keepdim=True)                # (MN, H, U, 1): itself
            w = torch.softmax(torch.cat([s_p, s_n], -1) / math.sqrt(dh), dim=-1)
            att = w[..., :Tp] @ v_p + w[..., Tp:] * v_n          # (MN, H, U, dh)
            att = att.permute(0, 2, 1, 3).reshape(M, N * U, d)
            y = y + torch.baddbmm(self.b[f"proj{l}"], att, self.w[f"proj{l}"])
            hdn = self._ln(y, f"ln2_{l}")
            hdn = F.gelu(torch.baddbmm(self.b[f"fc{l}"], hdn, self.w[f"fc{l}"]))
            y = y + torch.baddbmm(self.b[f"out{l}"], hdn, self.w[f"out{l}"])
        y = self._ln(y, "lnf")
        return torch.log_softmax(torch.bmm(y, self.w["unembed"]), -1).view(M, N, U, -1)


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor,
            target_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy per model, every non-PAD target counted (or only the targets
    where ``target_mask (M, B, T)`` is true, position ``t`` marking token ``t`` as a target).
    ``logits (M, B, T, V)``, ``tokens (M, B, T)`` -> ``(M,)``.

    Speed without changing a bit of training: the log-softmax runs on the whole contiguous
    logits and is sliced afterwards (a log-softmax over a strided slice is ten times slower on
    CPU), and with a ``target_mask`` only the target rows are normalised. Rows are normalised
    one by one either way, so the gradients, and every trained weight, are bitwise those of
    the plain formula; only the summation order of the reported loss differs (in its last
    bits)."""
    tgt = tokens[:, :, 1:]
    if target_mask is None:
        lp = torch.log_softmax(logits, dim=-1)[:, :, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        mask = (tgt != PAD).float()
        return -(lp * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))
    mask = target_mask[:, :, 1:] & (tgt != PAD)
    M = logits.shape[0]
    owner = torch.arange(M, device=mask.device).view(M, 1, 1).expand_as(mask)[mask]  # its model
    lp = torch.log_softmax(logits[:, :, :-1][mask], dim=-1).gather(-1, tgt[mask].unsqueeze(-1))
    total = torch.zeros(M, dtype=lp.dtype, device=lp.device).index_add(0, owner, lp.squeeze(-1))
    return -total / mask.sum(dim=(1, 2)).to(lp.dtype)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 100
    log_every: int = 100


def train_lm(model: BatchedTransformer, corpus: torch.Tensor | None, cfg: TrainConfig,
             seeds: Sequence[int], batch_seeds: Sequence[int] | None = None,
             extra: Callable[[int], torch.Tensor] | None = None,
             progress: Callable | None = None, callback: Callable[[int], None] | None = None,
             callback_every: int = 0, desc: str = "transformer") -> pd.DataFrame:
    """Train all models at once with AdamW (betas 0.9/0.98, linear warm-up, cosine decay).

    corpus: ``(M, S, T)`` or None (then only ``extra``), model ``i`` trains on ``corpus[i]``;
    each model draws its minibatches
    (without replacement within an epoch) from its own generator seeded by ``batch_seeds[i]``
    (default ``seeds[i]``); ``seeds`` label the models in the log.
    ``extra(step)``, if given, returns a second batch ``(M, E, T2)`` (sequences of another
    length, e.g. prompt episodes drawn afresh at every step), or a pair (tokens, target mask)
    to count only some targets; each model's loss is then the sum of its mean next-token loss
    on the two batches.
    ``callback(step)`` is called after steps ``callback_every, 2 * callback_every, ...`` and after
    the last step (with the number of steps done), e.g. to evaluate checkpoints.
    Returns the training log: one row per model and logged step (``step``, ``seed``, ``loss``,
    and ``loss_extra`` when ``extra`` is given).
    """
    if corpus is None and extra is None:
        raise ValueError("train_lm needs a corpus, an extra batch function, or both")
    M, S, T = corpus.shape if corpus is not None else (model.n_models, 0, 0)
    batch_seeds = list(seeds) if batch_seeds is None else list(batch_seeds)
    if M != model.n_models or len(seeds) != M or len(batch_seeds) != M:
        raise ValueError(f"corpus has {M} model slices, model has {model.n_models}, seeds "
                         f"{len(seeds)}, batch_seeds {len(batch_seeds)}")
    if corpus is not None and cfg.batch_size > S:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the corpus size {S}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    gens = [torch.Generator().manual_seed(int(s)) for s in batch_seeds]
    per_epoch = max(1, S // cfg.batch_size)
    perms: torch.Tensor | None = None
    log = []
    steps = range(cfg.steps) if progress is None else progress(range(cfg.steps), desc=desc)
    m_idx = torch.arange(M).view(M, 1)
    for step in steps:
        loss = torch.zeros(M)
        if corpus is not None:
            k = step % per_epoch
            if k == 0:
                perms = torch.stack([torch.randperm(S, generator=g) for g in gens])  # (M, S)
            idx = perms[:, k * cfg.batch_size:(k + 1) * cfg.batch_size]
            batch = corpus[m_idx, idx]  # (M, B, T)
            loss = lm_loss(model(batch), batch)
        total = loss
        if extra is not None:
            eb = extra(step)
            eb, emask = eb if isinstance(eb, tuple) else (eb, None)
            if eb.dim() != 3 or eb.shape[0] != M:
                raise ValueError(f"extra({step}) must return (M={M}, E, T) tokens, got {tuple(eb.shape)}")
            loss_extra = lm_loss(model(eb), eb, emask)
            total = loss + loss_extra
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            for i, s in enumerate(seeds):
                row = {"step": step, "seed": int(s), "loss": float(loss[i].detach())}
                if extra is not None:
                    row["loss_extra"] = float(loss_extra[i].detach())
                log.append(row)
        done = step + 1
        if callback is not None and ((callback_every and done % callback_every == 0)
                                     or done == cfg.steps):
            model.eval()
            callback(done)
            model.train()
    return pd.DataFrame(log)


@torch.no_grad()
def score_candidates(logits_fn: Callable[[torch.Tensor], torch.Tensor], prompts: torch.Tensor,
                     candidates: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Summed log-probability of each candidate answer after its prompt.

    logits_fn: ``(M, B, T) -> (M, B, T, V)`` (e.g. a :class:`BatchedTransformer`).
    prompts ``(M, Q, Tp)``, candidates ``(M, Q, C, La)`` with ``La`` in ``{1, 2}``
    -> scores ``(M, Q, C)``: ``log p(a_1 | prompt) [+ log p(a_2 | prompt, a_1)]``.
    For two-token answers the prompt is extended once by every distinct first token ``u`` that
    occurs among the candidates (``U`` of them), instead of once per candidate; a model with an
    ``extend_logp`` method (:class:`BatchedTransformer`) computes only the extension position.
    """
    if prompts.dim() != 3:
        raise ValueError(f"prompts must be (M, Q, Tp), got {tuple(prompts.shape)}")
    M, Q, Tp = prompts.shape
    if candidates.dim() != 4 or candidates.shape[:2] != (M, Q):
        raise ValueError(f"candidates must be (M={M}, Q={Q}, C, La), got {tuple(candidates.shape)}")
    C, La = candidates.shape[2:]
    if La not in (1, 2):
        raise ValueError(f"answers of length 1 or 2 are supported, got {La}")

    def last_logp(seqs: torch.Tensor) -> torch.Tensor:  # (M, N, T) -> (M, N, V)
        out = [torch.log_softmax(logits_fn(seqs[:, s:s + chunk])[:, :, -1].float(), dim=-1)
               for s in range(0, seqs.shape[1], chunk)]
        return torch.cat(out, dim=1)

    lp1 = last_logp(prompts)  # (M, Q, V)
    first = candidates[..., 0]
    score = lp1.gather(-1, first)  # (M, Q, C)
    if La == 1:
        return score
    uniq = torch.unique(first)  # (U,)
    U = uniq.numel()
    if hasattr(logits_fn, "extend_logp"):   # reuse the prompt's keys and values
        per = max(1, chunk // max(1, U))
        lp2 = torch.cat([logits_fn.extend_logp(prompts[:, s:s + per],
                                               uniq.view(1, 1, U).expand(M, min(per, Q - s), U))
                         for s in range(0, Q, per)], dim=1)  # (M, Q, U, V)
    else:
        ext = torch.cat([prompts[:, :, None, :].expand(M, Q, U, Tp),
                         uniq.view(1, 1, U, 1).expand(M, Q, U, 1)], dim=-1).reshape(M, Q * U, Tp + 1)
        lp2 = last_logp(ext).view(M, Q, U, -1)  # (M, Q, U, V)
    pos = torch.searchsorted(uniq, first.contiguous())  # (M, Q, C) index into uniq
    lp2c = lp2.gather(2, pos.unsqueeze(-1).expand(M, Q, C, lp2.shape[-1]))  # (M, Q, C, V)
    return score + lp2c.gather(-1, candidates[..., 1:2]).squeeze(-1)


@torch.no_grad()
def greedy_answers(logits_fn: Callable[[torch.Tensor], torch.Tensor], prompts: torch.Tensor,
                   length: int, allowed: Sequence[range] | None = None) -> torch.Tensor:
    """Greedy decoding of ``length`` tokens after each prompt: ``(M, Q, Tp) -> (M, Q, length)``.
    ``allowed``: optional token range per answer position; without it the argmax is over the
    whole vocabulary (as in free generation)."""
    seq = prompts
    for j in range(length):
        logits = logits_fn(seq)[:, :, -1]
        if allowed is not None:
            r = allowed[j]
            nxt = logits[..., r.start:r.stop].argmax(-1) + r.start
        else:
            nxt = logits.argmax(-1)
        seq = torch.cat([seq, nxt.unsqueeze(-1)], dim=-1)
    return seq[:, :, prompts.shape[-1]:]
