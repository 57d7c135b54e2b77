"""Estimators of how constrained a solution is, and what a representation holds. Each one is
validated in the tests on a case with a known answer.

- :mod:`.llc`     -- the local learning coefficient by SGLD (Lau et al.), with toy models whose
                     coefficient is known
- :mod:`.volume`  -- local volume: the share of random perturbations that keep the loss low
- :mod:`.probes`  -- linear (ridge) probes, held-out and in-sample, named as such
"""
