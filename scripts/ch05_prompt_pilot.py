"""Pilot for chapter 05's prompt route: can one model learn to read facts from its prompt?

Pretrains one model (seed 0's episode pool, as the chapter's shared base) on prompt episodes
only and scores it on seed 0's test episodes, every ``--every`` steps and at the end. With
``--finetune-steps`` it then fine-tunes copies of the chapter's base for ``--seeds`` seeds on
their facts together with episodes, as the chapter's ratio run does, and scores those. Prints
the exact-match accuracy of every condition. The chapter's "Settings tried" paragraph reports
what these pilots found.

    python scripts/ch05_prompt_pilot.py --steps 3000 --batch 256 --lr 1e-3 --share 0.5 \\
        --questions 4 --finetune-steps 1200 --finetune-batch 32 --seeds 3

Variants of the pretraining (pretraining-only pilots): ``--layers 3`` (a deeper model),
``--base-seed 1`` (another initialisation and episode stream), ``--hop-mix 0,1,0`` (the share of
hop-1, hop-2 and composed questions in two-hop episodes; equal by default). With the defaults
the pretrained model is the chapter's base, bit for bit.

Sizes and defaults are those of the chapter's standard profile. Runs on one CPU thread unless
``--threads`` says otherwise; 3,000 steps of 256 episodes take about seven minutes.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from countingargs.chapters.ch05_reversal import experiment as ex
from countingargs.nets.transformer import TrainConfig

FACTS = dict(n_per_group=100, n_templates=4, n_countries=10, cities_per_country=4,
             persons_per_city=6, composed_per_city=4, unseen_cities_per_country=2)
MODEL = dict(d_model=64, n_layers=2, n_heads=4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000, help="pretraining steps")
    ap.add_argument("--batch", type=int, default=256, help="episodes per pretraining step")
    ap.add_argument("--lr", type=float, default=1e-3, help="pretraining learning rate")
    ap.add_argument("--share", type=float, default=0.5, help="share of two-hop episodes")
    ap.add_argument("--questions", type=int, default=4, help="questions per episode")
    ap.add_argument("--k", type=int, default=2, help="facts per episode")
    ap.add_argument("--layers", type=int, default=MODEL["n_layers"], help="transformer blocks")
    ap.add_argument("--base-seed", type=int, default=0,
                    help="seed of the pretrained model's initialisation and episodes")
    ap.add_argument("--hop-mix", default=None,
                    help="weights of hop-1, hop-2 and composed questions, e.g. 0,1,0")
    ap.add_argument("--every", type=int, default=250, help="score the model every N steps")
    ap.add_argument("--finetune-steps", type=int, default=0, help="0: pretraining only")
    ap.add_argument("--finetune-lr", type=float, default=3e-3)
    ap.add_argument("--finetune-batch", type=int, default=32, help="episodes per fine-tuning step")
    ap.add_argument("--seeds", type=int, default=3, help="seeds fine-tuned")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    mix = None if a.hop_mix is None else [float(x) for x in a.hop_mix.split(",")]
    variant = a.layers != MODEL["n_layers"] or a.base_seed != 0 or mix is not None
    if a.finetune_steps and variant:
        ap.error("--finetune-steps fine-tunes the chapter's base: leave --layers, --base-seed "
                 "and --hop-mix at their defaults")
    torch.set_num_threads(a.threads)

    facts = ex.make_facts(0, **FACTS, n_context=100, n_context_persons=100, n_episode=500,
                          n_ctx_cities=20)
    pre = TrainConfig(steps=a.steps, lr=a.lr, warmup=min(100, max(1, a.steps // 10)),
                      log_every=max(1, a.steps // 20))
    queries = ex.build_queries([facts], twohop=False, curse=False, context_k=a.k, seeds=[0])
    t0 = time.time()

    def score(model, step: int) -> None:
        s = ex.summarise(ex.evaluate(model, queries, [0], a.k))
        cells = "  ".join(f"{c.removeprefix('context/')} {acc:.3f}"
                          for c, acc in zip(s.condition, s.accuracy))
        print(f"step {step:>5} ({time.time() - t0:.0f} s): {cells}", flush=True)

    if not a.finetune_steps:
        ex.pretrain_on_prompts(facts, [a.base_seed], pre, a.k, a.batch, a.share, a.questions,
                               MODEL["d_model"], a.layers, MODEL["n_heads"], twohop_mix=mix,
                               checkpoint=score, checkpoint_every=a.every)
        return
    # the chapter's shared base itself (kept in this process, so the fine-tuning reuses it)
    base, _ = ex._shared_base(facts, [0], pre, a.k, a.batch, a.share, a.questions,
                              MODEL["d_model"], MODEL["n_layers"], MODEL["n_heads"])
    score(base, a.steps)

    cfg = TrainConfig(steps=a.finetune_steps, batch_size=128, lr=a.finetune_lr,
                      warmup=min(100, a.finetune_steps // 10),
                      log_every=max(1, a.finetune_steps // 40))
    t0 = time.time()
    res = ex.run_experiment(list(range(a.seeds)), cfg=cfg, pretrain_cfg=pre, pretrain_batch=a.batch,
                            context_k=a.k, context_batch=a.finetune_batch, context_twohop_share=a.share,
                            context_questions=a.questions, n_context_persons=100,
                            **FACTS, **MODEL)
    print(f"fine-tuning {a.seeds} seeds: {time.time() - t0:.0f} s")
    table = res["summary"].groupby("condition")[["accuracy", "rank_lift_k"]].agg(["mean", "min"])
    with pd.option_context("display.width", 120):
        print(table.to_string())


if __name__ == "__main__":
    main()
