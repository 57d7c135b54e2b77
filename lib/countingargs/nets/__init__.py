"""Shared by the chapters: batched models, losses, the one trainer and seeding.

- :mod:`.mlp`      -- :class:`BatchedMLP` (``M`` MLPs as one tensor per layer) and the one
                      functional :func:`forward`
- :mod:`.resmlp`   -- :class:`BatchedResMLP`: ``M`` residual (or plain) MLPs of ``L`` blocks, with
                      block deletion, reordering and Veit et al.'s path-restricted backward pass
- :mod:`.losses`   -- per-network losses (cross-entropy, distillation, logistic, accuracy)
- :mod:`.train`    -- :func:`train_until`: train many networks, freezing each at its target
- :mod:`.seeding`  -- every seed from one ``SeedSequence`` derivation; per-network counters
"""
