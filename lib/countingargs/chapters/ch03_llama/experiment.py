"""The llama analogy (chapter 03): does an extra internal computation cost parameter volume?

Three experiments, one section each:

1. **Exact counting** (:func:`enumerate_threshold_nets`). Threshold networks
   ``n inputs -> H hidden -> 1 output`` with every weight and bias in ``{-1, 0, 1}``, every
   configuration counted. Each configuration that implements a target ``f`` is put in one class:

   - ``cancelled``: some hidden unit computes a non-constant function ``g``, is read by the
     output (output weight != 0), and yet its information never reaches the output: a set of
     units containing it can be replaced by constants without changing the output function
     ("drawn, then deleted");
   - ``unread``: not cancelled, but some hidden unit computes a non-constant ``g`` and has
     output weight 0 (spare capacity computing something nobody reads);
   - ``straightforward``: every hidden unit is constant or read and needed.

   Counting is factorised: a hidden unit's function depends only on its own ``n + 1``
   parameters, so the ``3^(n+1)`` hidden configurations are grouped by the function they
   compute (with multiplicities) and only tuples of distinct functions times the ``3^(H+1)``
   output configurations are enumerated. :func:`enumerate_bruteforce` counts the same classes
   configuration by configuration (for checking).
2. **Sampling** (:func:`sample_llamas`). Random ReLU networks 7->40->40->1 on the 7-bit cube;
   among those implementing a target ``f``, how many have a hidden unit computing a feature
   ``g`` of input bits that ``f`` ignores, and does that unit feed the output?
3. **Trained networks** (:func:`train_llama_pairs` and helpers). MLPs on ``load_digits``,
   trained plainly or with an auxiliary head forcing an irrelevant nonlinear feature into
   hidden layer 2, compared by LLC and local volume (:mod:`countingargs.llc`) at matched loss.

The heavy loops run as chunks of :func:`countingargs.chunks.map_chunks` (in process, or on Dask
with ``scheduler``): the sampling by blocks of networks (:func:`llama_chunk`), the training by
groups of seeds (:func:`train_chunk`) and the LLC by setting and group of networks
(:func:`llc_chunk`). The results are the same bit for bit on any number of workers (on CPU);
those of the training and the LLC also under any grouping, since every network's randomness
depends only on its own identity (a sampling chunk draws from the stream of its index).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from ...data.cube import cube as _cube
from ...nets.seeding import generator, rng, seed_int

CLASSES = ("straightforward", "unread", "cancelled")
#: the first version of the chapter's LLC setting [step, localization, burn-in] and local-volume
#: radii (absolute), kept as references outside the verdicts
FIRST_VERSION_LLC = (1e-4, 100.0, 200)
FIRST_VERSION_RADII = (1.0, 2.0, 3.0, 4.0)
STRAIGHT, UNREAD, CANCELLED = 0, 1, 2
#: per-unit status codes of :func:`classify`
UNIT_CONST, UNIT_UNREAD, UNIT_USED, UNIT_CANCELLED = 0, 1, 2, 3


# =============================================================================================
# 1. exact counting
def cube(n: int) -> torch.Tensor:
    """All ``2^n`` points of ``{0,1}^n`` as an int tensor ``(2^n, n)`` in the book's bit order
    (:mod:`countingargs.data.cube`: row ``i`` is the binary expansion of ``i``, ``x_1`` most
    significant). A truth table ``bits[x]`` is encoded by :func:`func_code` with row ``x`` as
    bit ``x``, so ``x_1 AND x_2`` is ``0b1000`` and ``x_1`` is ``0b1100``."""
    if not 1 <= n <= 12:
        raise ValueError(f"n must be in 1..12, got {n}")
    return _cube(n).to(torch.int64)


def ternary_grid(d: int) -> torch.Tensor:
    """All ``3^d`` vectors in ``{-1,0,1}^d``: ``(3^d, d)`` int64, lexicographic."""
    if d < 0 or 3 ** d > 50_000_000:
        raise ValueError(f"3^{d} configurations is too many to list")
    if d == 0:
        return torch.zeros(1, 0, dtype=torch.int64)
    g = torch.cartesian_prod(*[torch.tensor([-1, 0, 1])] * d)
    return g.reshape(-1, d).to(torch.int64)


def func_code(bits: torch.Tensor) -> torch.Tensor:
    """Encode truth tables ``(..., X)`` of 0/1 as integers ``sum_x bits[x] 2^x`` (``X <= 62``)."""
    x = bits.shape[-1]
    if x > 62:
        raise ValueError(f"truth tables of {x} rows do not fit in int64")
    return (bits.to(torch.int64) << torch.arange(x)).sum(-1)


def hidden_functions(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct functions one threshold unit ``[w.x + b > 0]`` computes on ``{0,1}^n`` with
    ``w in {-1,0,1}^n, b in {-1,0,1}``: truth tables ``(G, 2^n)`` (0/1, int64, sorted by code)
    and multiplicities ``(G,)`` (how many of the ``3^(n+1)`` configurations compute each)."""
    x = cube(n)
    cfg = ternary_grid(n + 1)
    bits = ((x @ cfg[:, :n].T + cfg[:, n]) > 0).T.to(torch.int64)  # (3^(n+1), X)
    codes = func_code(bits)
    uniq, inv, counts = torch.unique(codes, return_inverse=True, return_counts=True)
    first = torch.zeros(len(uniq), dtype=torch.long).scatter_(0, inv, torch.arange(len(codes)))
    return bits[first], counts


def _subsets(h: int) -> torch.Tensor:
    """Every non-empty subset of ``h`` units as a 0/1 mask: ``(2^h - 1, h)`` int64."""
    i = torch.arange(1, 2 ** h)
    return (i[:, None] >> torch.arange(h)) & 1


def classify(hidden: torch.Tensor, v: torch.Tensor, c: torch.Tensor):
    """Classify threshold networks given their hidden truth tables and output layer.

    ``hidden``: ``(R, H, X)`` 0/1 (unit ``j``'s value on each input), ``v``: ``(R, H)`` output
    weights in ``{-1, 0, 1}``, ``c``: ``(R,)`` integer output bias. The output is
    ``[v.h + c > 0]``.

    Returns ``(out_code (R,), net_class (R,), unit_status (R, H))``: the output function's
    code (:func:`func_code`), the class (``STRAIGHT``/``UNREAD``/``CANCELLED``) and per-unit
    status (``UNIT_CONST``/``UNIT_UNREAD``/``UNIT_USED``/``UNIT_CANCELLED``). A read,
    non-constant unit is *cancelled* when some set ``S`` of units containing it can be replaced
    by constants (each 0 or 1) without changing the output on any input.

    The search runs over the ``2^H - 1`` sets ``S``, not over (set, constants) pairs: replacing
    ``S`` by constants shifts the output's pre-activation by ``s = sum_{j in S} v_j c_j``, and as
    ``v_j`` is in ``{-1, 0, 1}`` the reachable shifts are exactly the integers from ``-#{v_j = -1}``
    to ``#{v_j = +1}``. ``S`` works iff some reachable integer ``s`` keeps every input on its side:
    ``s >= 1 - p(x)`` where the output is 1 and ``s <= -p(x)`` where it is 0 (``p`` the
    pre-activation without ``S``). Equal to the search over every (set, constants) pair (a test
    checks it against that search).
    """
    if hidden.dim() != 3 or v.shape != hidden.shape[:2] or c.shape != hidden.shape[:1]:
        raise ValueError(f"shapes: hidden (R, H, X), v (R, H), c (R,); got {tuple(hidden.shape)}, "
                         f"{tuple(v.shape)}, {tuple(c.shape)}")
    if v.numel() and int(v.abs().max()) > 1:
        raise ValueError("output weights v must lie in {-1, 0, 1}")
    hidden, v, c = hidden.to(torch.int64), v.to(torch.int64), c.to(torch.int64)
    h = hidden.shape[1]
    vh = v[:, :, None] * hidden  # (R, H, X): unit j's contribution
    pre = vh.sum(1) + c[:, None]  # (R, X)
    out = pre > 0
    nonconst = hidden.amax(-1) != hidden.amin(-1)  # (R, H)
    read = v != 0
    # A constant output survives replacing every unit by its value at any one input, so there
    # every read non-constant unit is removable; only the other rows need the search below.
    const_out = out.all(-1) | ~out.any(-1)
    removable = (nonconst & read) & const_out[:, None]
    todo = torch.nonzero(~const_out & (nonconst & read).any(1)).squeeze(1)
    if len(todo):
        m = _subsets(h).to(torch.float32)  # (S, H); small integers: float32 is exact
        p_rest = pre[todo].to(torch.float32)[None] - torch.einsum("sh,rhx->srx", m,
                                                                   vh[todo].to(torch.float32))
        vt = v[todo].to(torch.float32)
        lo = -(m @ (vt < 0).to(torch.float32).T)  # (S, R'): most negative shift
        hi = m @ (vt > 0).to(torch.float32).T
        o = out[todo][None]  # (1, R', X)
        big = torch.tensor(float(2 * (h + int(c.abs().max()) + 2)))  # beyond any |1 - p|
        lo = torch.maximum(lo, torch.where(o, 1 - p_rest, -big).amax(-1))
        hi = torch.minimum(hi, torch.where(o, big, -p_rest).amin(-1))
        removable[todo] = ((lo <= hi).to(torch.float32).T @ m) > 0
    status = torch.full_like(v, UNIT_CONST)
    status[nonconst & ~read] = UNIT_UNREAD
    status[nonconst & read] = UNIT_USED
    status[nonconst & read & removable] = UNIT_CANCELLED
    net = torch.full((len(c),), STRAIGHT, dtype=torch.int64)
    net[(status == UNIT_UNREAD).any(1)] = UNREAD
    net[(status == UNIT_CANCELLED).any(1)] = CANCELLED
    return func_code(out.to(torch.int64)), net, status


def enumerate_threshold_nets(n: int, h: int, chunk: int = 65536) -> dict:
    """Exact class counts for every target function of ``n`` inputs, ``h`` hidden units.

    Returns a dict: ``n, h, n_params`` (``h (n+1) + h + 1``), ``n_configs`` (``3^n_params``),
    ``counted`` (total weight enumerated; equals ``n_configs``), ``volume`` (``(2^(2^n), 3)``
    float64 array: configurations implementing each function code, per class), ``g_volume``
    (``(2^(2^n), G)``: configurations implementing ``f`` in which some cancelled unit computes
    hidden function ``g``), ``g_unread`` (the same for unread units), ``hidden_bits`` (``(G, X)``)
    and ``hidden_mult`` (``(G,)``).
    """
    if n < 1 or h < 1:
        raise ValueError(f"need n >= 1 and h >= 1, got n={n}, h={h}")
    if n > 4:
        raise ValueError(f"n = {n}: 2^(2^n) target functions is too many to tabulate")
    bits, mult = hidden_functions(n)
    g_count, x = bits.shape
    n_codes = 2 ** x
    out_cfg = ternary_grid(h + 1)  # (O, H+1)
    o = len(out_cfg)
    # hidden units are interchangeable (together with their output weights, and every output
    # configuration is enumerated), so one ordering per multiset of hidden functions suffices,
    # weighted by its number of distinct orderings
    combos = torch.tensor(list(itertools.combinations_with_replacement(range(g_count), h)),
                          dtype=torch.long).reshape(-1, h)
    n_orders = torch.tensor([math.factorial(h) / math.prod(math.factorial(k) for k in
                             np.unique(row, return_counts=True)[1]) for row in combos.numpy()],
                            dtype=torch.float64)
    n_tuples = len(combos)
    volume = torch.zeros(n_codes * 3, dtype=torch.float64)
    g_volume = torch.zeros(n_codes * g_count, dtype=torch.float64)
    g_unread = torch.zeros(n_codes * g_count, dtype=torch.float64)
    mult_d = mult.to(torch.float64)
    rows_per = max(1, chunk // o)
    for lo in range(0, n_tuples, rows_per):
        t = torch.arange(lo, min(lo + rows_per, n_tuples))
        idx = combos[t]  # (T, H)
        weight = mult_d[idx].prod(1) * n_orders[t]  # (T,)
        hid = bits[idx]  # (T, H, X)
        tt = len(t)
        hid_r = hid[:, None].expand(tt, o, h, x).reshape(tt * o, h, x)
        v = out_cfg[None, :, :h].expand(tt, o, h).reshape(-1, h)
        c = out_cfg[None, :, h].expand(tt, o).reshape(-1)
        code, net, status = classify(hid_r, v, c)
        w = weight[:, None].expand(tt, o).reshape(-1)
        volume += torch.bincount(code * 3 + net, weights=w, minlength=n_codes * 3)
        gi = idx[:, None, :].expand(tt, o, h).reshape(-1, h)
        for st, acc in ((UNIT_CANCELLED, g_volume), (UNIT_UNREAD, g_unread)):
            # count each (configuration, g) once even if two units compute the same g
            is_st = status == st
            rows = torch.nonzero(is_st.any(1)).squeeze(1)
            if len(rows) == 0:
                continue
            hit = torch.zeros(len(rows), g_count, dtype=torch.int8).scatter_reduce_(
                1, gi[rows], is_st[rows].to(torch.int8), reduce="amax")
            r, g = torch.nonzero(hit, as_tuple=True)
            acc += torch.bincount(code[rows[r]] * g_count + g, weights=w[rows[r]],
                                  minlength=n_codes * g_count)
    n_params = h * (n + 1) + h + 1
    return {"n": n, "h": h, "n_params": n_params, "n_configs": 3 ** n_params,
            "counted": float(volume.sum()),
            "volume": volume.reshape(n_codes, 3).numpy(),
            "g_volume": g_volume.reshape(n_codes, g_count).numpy(),
            "g_unread": g_unread.reshape(n_codes, g_count).numpy(),
            "hidden_bits": bits.numpy(), "hidden_mult": mult.numpy()}


def sample_threshold_nets(n: int, h: int, n_samples: int, seed: int,
                          chunk: int = 16384) -> pd.DataFrame:
    """Class counts per target function from ``n_samples`` configurations drawn uniformly from
    ``{-1, 0, 1}^P`` (every weight and bias independent and uniform), classified by
    :func:`classify`: the sampled counterpart of :func:`enumerate_threshold_nets` for sizes
    beyond exhaustive enumeration.

    Chunk ``i`` (of ``chunk`` configurations) uses the generator
    :func:`countingargs.nets.seeding.generator` of ``(seed, i)``: the counts depend only on
    ``(seed, n_samples, chunk)``. Returns one row per function code
    that was drawn at least once: ``n, h, f_code, k_straightforward, k_unread, k_cancelled,
    n_samples`` (the configurations are i.i.d., so the counts are multinomial)."""
    if n < 1 or h < 1 or n > 4:
        raise ValueError(f"need 1 <= n <= 4 and h >= 1, got n={n}, h={h}")
    if n_samples < 1 or chunk < 1:
        raise ValueError(f"need n_samples >= 1 and chunk >= 1, got {n_samples}, {chunk}")
    x = cube(n)
    p = h * (n + 1) + h + 1
    n_codes = 2 ** (2 ** n)
    counts = torch.zeros(n_codes * 3, dtype=torch.int64)
    for i, lo in enumerate(range(0, n_samples, chunk)):
        r = min(chunk, n_samples - lo)
        cfg = torch.randint(-1, 2, (r, p), generator=generator(seed, i))
        hw = cfg[:, : h * (n + 1)].reshape(r, h, n + 1)
        hidden = ((torch.einsum("xi,rhi->rhx", x, hw[:, :, :n]) + hw[:, :, n:]) > 0).to(torch.int64)
        code, net, _ = classify(hidden, cfg[:, h * (n + 1): h * (n + 1) + h], cfg[:, -1])
        counts += torch.bincount(code * 3 + net, minlength=n_codes * 3)
    counts = counts.reshape(n_codes, 3).numpy()
    seen = np.nonzero(counts.sum(1))[0]
    return pd.DataFrame({"n": n, "h": h, "f_code": seen, "k_straightforward": counts[seen, 0],
                         "k_unread": counts[seen, 1], "k_cancelled": counts[seen, 2],
                         "n_samples": n_samples})


def enumerate_bruteforce(n: int, h: int) -> np.ndarray:
    """Class counts per function code by listing every configuration (small sizes only):
    ``(2^(2^n), 3)`` int64. Independent of the factorisation in
    :func:`enumerate_threshold_nets`; used to check it."""
    p = h * (n + 1) + h + 1
    if 3 ** p > 2_000_000:
        raise ValueError(f"3^{p} configurations is too many for brute force")
    x = cube(n)
    cfg = ternary_grid(p)
    hw = cfg[:, : h * (n + 1)].reshape(-1, h, n + 1)
    hidden = ((torch.einsum("xi,rhi->rhx", x, hw[:, :, :n]) + hw[:, :, n:]) > 0).to(torch.int64)
    v, c = cfg[:, h * (n + 1): h * (n + 1) + h], cfg[:, -1]
    code, net, _ = classify(hidden, v, c)
    n_codes = 2 ** (2 ** n)
    return torch.bincount(code * 3 + net, minlength=n_codes * 3).reshape(n_codes, 3).numpy()


def support(code: int, n: int) -> frozenset:
    """The input variables (column indices of :func:`cube`) a Boolean function depends on."""
    x = cube(n)
    bits = (int(code) >> torch.arange(2 ** n)) & 1
    dep = set()
    for k in range(n):
        flipped = x.clone()
        flipped[:, k] ^= 1
        partner = func_code_rows(flipped)
        if bool((bits != bits[partner]).any()):
            dep.add(k)
    return frozenset(dep)


def func_code_rows(x: torch.Tensor) -> torch.Tensor:
    """Row index in :func:`cube` of each point ``x (R, n)`` (0/1 ints)."""
    n = x.shape[1]
    return (x.to(torch.int64) << torch.arange(n - 1, -1, -1)).sum(1)


def counting_table(res: dict) -> pd.DataFrame:
    """One row per target function that some configuration implements (constants excluded):
    ``n, h, f_code, n_support, v_straightforward, v_unread, v_cancelled, v_total,
    share_cancelled, share_extra, n_llamas_naive, n_llamas_cancelled, sum_g_cancelled,
    log10_ratio_cancelled`` where the ratio is cancelled / not-cancelled volume (nan when the
    cancelled volume is 0) and ``n_llamas_naive`` is the number of distinct non-constant
    functions a hidden unit can compute."""
    n, h = res["n"], res["h"]
    vol, gv = res["volume"], res["g_volume"]
    nonconst_g = int(((res["hidden_bits"].max(1) != res["hidden_bits"].min(1))).sum())
    x = 2 ** n
    rows = []
    for code in np.nonzero(vol.sum(1))[0]:
        if code == 0 or code == 2 ** x - 1:
            continue
        s, u, cnc = vol[code]
        tot = s + u + cnc
        rows.append({"n": n, "h": h, "f_code": int(code), "n_support": len(support(int(code), n)),
                     "v_straightforward": s, "v_unread": u, "v_cancelled": cnc, "v_total": tot,
                     "share_cancelled": cnc / tot, "share_extra": (u + cnc) / tot,
                     "n_llamas_naive": nonconst_g,
                     "n_llamas_cancelled": int((gv[code] > 0).sum()),
                     "sum_g_cancelled": float(gv[code].sum()),
                     "log10_ratio_cancelled": (math.log10(cnc / (s + u)) if cnc > 0 and s + u > 0
                                               else float("nan"))})
    return pd.DataFrame(rows)


# =============================================================================================
# 2. sampling: random 7 -> 40 -> 40 -> 1 ReLU networks on the 7-bit cube
def feature_family(n_inputs: int = 7, n_random: int = 256, seed: int = 0) -> pd.DataFrame:
    """The candidate "llamas": Boolean features of the cube, each kept up to complement.

    Literals ``x_k``; conjunctions of two literals; parities of 2 and 3 bits; ``n_random``
    random balanced functions (seeded). Bit order: :mod:`countingargs.data.cube`.
    Returns a DataFrame ``kind, name, bits`` (``bits``: numpy bool ``(2^n,)``), deduplicated
    up to complement, constants excluded."""
    x = _cube(n_inputs).numpy().astype(bool)
    rows = []
    for k in range(n_inputs):
        rows.append(("literal", f"x{k + 1}", x[:, k]))
    for i, j in itertools.combinations(range(n_inputs), 2):
        for si, sj in itertools.product((True, False), repeat=2):
            rows.append(("conjunction", f"{'' if si else '~'}x{i + 1}&{'' if sj else '~'}x{j + 1}",
                         (x[:, i] == si) & (x[:, j] == sj)))
    for r in (2, 3):
        for sub in itertools.combinations(range(n_inputs), r):
            rows.append(("parity", "^".join(f"x{k + 1}" for k in sub),
                         np.logical_xor.reduce(x[:, list(sub)], axis=1)))
    gen = rng("llama-family", seed)
    for i in range(n_random):
        b = np.zeros(2 ** n_inputs, dtype=bool)
        b[gen.permutation(2 ** n_inputs)[: 2 ** (n_inputs - 1)]] = True
        rows.append(("random", f"r{i}", b))
    seen, out = set(), []
    for kind, name, b in rows:
        canon = b if not b[0] else ~b
        key = canon.tobytes()
        if key in seen or canon.all() or not canon.any():
            continue
        seen.add(key)
        out.append({"kind": kind, "name": name, "bits": canon})
    return pd.DataFrame(out)


def _canon_words(bits: torch.Tensor) -> torch.Tensor:
    """``(..., L)`` bool -> packed words of the pattern taken up to complement (bit 0 cleared)."""
    from ...nets.sampler import pack_bits

    flip = bits[..., :1]
    canon = bits ^ flip
    shape = canon.shape[:-1]
    return pack_bits(canon.reshape(-1, canon.shape[-1])).reshape(*shape, -1)


def _ablate_outputs(layers, hid, out):
    """Output of each network with each hidden unit replaced by its mean over the inputs.

    ``layers``: volume's transposed ``[(W1_t, b1), (W2_t, b2), (W3_t, b3)]`` for M networks;
    ``hid``: ``[(M, L, 40), (M, L, 40)]``; ``out``: ``(M, L)``. Returns ``(M, 80, L)``."""
    (w2t, b2), (w3t, b3) = layers[1], layers[2]
    h1, h2 = hid
    w2 = w2t.transpose(1, 2)  # (M, h1, h2)
    w3 = w3t[:, 0, :]  # (M, h2)
    d1 = h1 - h1.mean(1, keepdim=True)  # (M, L, h1)
    z2 = torch.baddbmm(b2.transpose(1, 2), h1, w2)  # (M, L, h2)
    # layer-1 unit u removed: z2 - d1[..., u, None] * w2[:, u, :]
    z2a = z2[:, None] - d1.transpose(1, 2)[..., None] * w2[:, :, None, :]  # (M, h1, L, h2)
    out1 = (torch.relu(z2a) * w3[:, None, None, :]).sum(-1) + b3[:, 0, 0, None, None]
    d2 = h2 - h2.mean(1, keepdim=True)
    out2 = out[:, None, :] - d2.transpose(1, 2) * w3[:, :, None]  # (M, h2, L)
    return torch.cat([out1, out2], 1)


def llama_units(params: torch.Tensor, family_words: torch.Tensor, family_bits: torch.Tensor,
                n_inputs: int = 7, hidden=(40, 40)) -> dict:
    """Which hidden units of each network compute a feature of the family, and do they matter.

    ``params``: volume's flat buffers ``(M, P)``; ``family_words``: ``(F, W)`` canonical packed
    features; ``family_bits``: ``(F, L)`` bool. A unit *computes* ``g`` when its active set
    ``{x : h(x) > 0}`` equals ``g`` or its complement (exact sign pattern). The network's own
    function ``f`` and its complement are not counted as llamas. A unit *feeds* the output when
    replacing it by its mean over the inputs changes the sign of the output on some input.
    A feature is *decodable* from a layer when a least-squares linear read-out (with bias,
    ridge 1e-6)
    of that layer's activations gets its sign right on all inputs.

    Every ``g`` (not only the family's): a unit computes *some* non-constant ``g`` when its
    activation takes more than one value over the inputs (range above 1e-6).

    Returns per network ``(M,)`` tensors: ``out_words (M, W)``, ``n_llama_units``,
    ``any_llama``, ``any_fed_llama``, ``any_unfed_llama`` (some llama unit, none of the llama
    units feeds), ``n_distinct_g`` (family features computed exactly by some unit),
    ``n_decodable`` (family features decodable from either layer), ``n_units_fed``,
    ``n_units_nonconst`` (units computing some non-constant ``g``), ``any_nonconst`` and
    ``any_fed`` (some unit feeds the output; a unit that feeds is non-constant).
    """
    from ...nets.sampler import forward_block, pack_bits, unpack_params

    x_t = _cube(n_inputs).T.contiguous()
    out, hid = forward_block(params, x_t, n_inputs, list(hidden), "relu", return_hidden=True)
    hid = [h.transpose(1, 2).contiguous() for h in hid]  # (M, L, h)
    layers = unpack_params(params, n_inputs, list(hidden))
    m, L = out.shape
    units = torch.cat(hid, 2)  # (M, L, U)
    act = (units > 0).transpose(1, 2)  # (M, U, L)
    uw = _canon_words(act)  # (M, U, W)
    fw = _canon_words(out > 0)  # (M, W)
    eq = (uw[:, :, None, :] == family_words[None, None]).all(-1)  # (M, U, F)
    is_f = (family_words[None] == fw[:, None]).all(-1)  # (M, F)
    eq = eq & ~is_f[:, None, :]
    llama_unit = eq.any(2)  # (M, U)
    abl = _ablate_outputs(layers, hid, out)
    fed = ((abl > 0) != (out > 0)[:, None, :]).any(-1)  # (M, U)
    # linear decodability from each layer (least squares with bias)
    t = family_bits.T.to(torch.float32) * 2 - 1  # (L, F)
    dec = torch.zeros(m, family_bits.shape[0], dtype=torch.bool)
    for h in hid:
        a = torch.cat([h, torch.ones(m, L, 1)], 2).double()
        gram = a.transpose(1, 2) @ a
        gram = gram + 1e-6 * torch.eye(gram.shape[-1], dtype=gram.dtype)
        coef = torch.linalg.solve(gram, a.transpose(1, 2) @ t.double())  # (M, h+1, F)
        pred = (a @ coef).float()  # (M, L, F)
        dec |= ((pred > 0) == (t > 0)).all(1)
    dec &= ~is_f
    nonconst = (units.amax(1) - units.amin(1)) > 1e-6  # (M, U)
    return {"out_words": pack_bits(out > 0), "n_llama_units": llama_unit.sum(1),
            "any_llama": llama_unit.any(1), "any_fed_llama": (llama_unit & fed).any(1),
            "any_unfed_llama": llama_unit.any(1) & ~(llama_unit & fed).any(1),
            "n_distinct_g": eq.any(1).sum(1), "n_decodable": dec.sum(1),
            "n_units_fed": fed.sum(1), "n_units_nonconst": nonconst.sum(1),
            "any_nonconst": nonconst.any(1), "any_fed": (fed & nonconst).any(1)}


def llama_chunk(seed: int, chunk: int, size: int, n_inputs: int, hidden: list, sigma_w: float,
                sigma_b: float, max_analysed: int) -> tuple[list, dict]:
    """Chunk ``chunk`` of :func:`sample_llamas` (a unit of :func:`countingargs.chunks.map_chunks`):
    the function key of each of its ``size`` networks, in sampling order, and per output group
    the parameters and keys of its first ``max_analysed`` networks."""
    from ...nets.sampler import sample_chunk

    ch = sample_chunk(n_inputs, list(hidden), size, sigma_w, sigma_b, "relu", seed, chunk)
    bits = ch.out > 0
    keys = [w.tobytes().hex() for w in ch.codes.numpy()]
    const = bits.all(1) | ~bits.any(1)
    keep = {}
    for grp, sel in (("constant", const), ("nonconstant", ~const)):
        idx = torch.nonzero(sel).squeeze(1)[:max_analysed]
        keep[grp] = (ch.params[idx].clone(), [keys[i] for i in idx.tolist()])
    return keys, keep


def sample_llamas(n_nets: int, seed: int, family: pd.DataFrame, sigma_w: float = 1.0,
                  sigma_b: float = 0.1, n_inputs: int = 7, hidden=(40, 40),
                  max_analysed: int = 2000, chunk: int = 4096, block: int = 256,
                  scheduler: str | None = None) -> pd.DataFrame:
    """Sample ``n_nets`` random networks (volume chapter's sampler and prior) with stream
    ``seed`` and analyse the hidden units of every network whose function is *constant* or is
    one of the *target* functions chosen later, plus a uniform subsample of all networks.

    To keep this cheap, at most ``max_analysed`` networks per output group
    (``"constant"``, ``"nonconstant"``) are analysed, chosen in sampling order (so without
    looking at their hidden units). Returns one row per analysed network: ``seed, group,
    f_key`` (hex of the packed function) and the per-network fields of :func:`llama_units`.
    Also returns the function counts of all sampled networks as ``df.attrs["f_counts"]``
    (a dict f_key -> count) and ``df.attrs["n_nets"]``. The chunks of networks are drawn by
    :func:`countingargs.chunks.map_chunks` on ``scheduler`` (in process by default; the same
    result anywhere on CPU).
    """
    from ...chunks import map_chunks

    fam_bits = torch.as_tensor(np.stack(family["bits"].to_list()))
    fam_words = _canon_words(fam_bits)
    counts: dict[str, int] = {}
    keep = {"constant": [], "nonconstant": []}
    n_chunks = (n_nets + chunk - 1) // chunk
    tasks = [dict(seed=seed, chunk=ci, size=min(chunk, n_nets - ci * chunk), n_inputs=n_inputs,
                  hidden=list(hidden), sigma_w=sigma_w, sigma_b=sigma_b, max_analysed=max_analysed)
             for ci in range(n_chunks)]
    for keys, kept in map_chunks(llama_chunk, tasks, name="sample_llamas", scheduler=scheduler,
                                 threads=None).results:
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        for grp, (params, gkeys) in kept.items():
            room = max_analysed - sum(len(p) for p, _ in keep[grp])
            if room > 0 and gkeys:
                keep[grp].append((params[:room], gkeys[:room]))
    rows = []
    for grp, parts in keep.items():
        for params, keys in parts:
            for lo in range(0, len(keys), block):
                res = llama_units(params[lo:lo + block], fam_words, fam_bits, n_inputs, hidden)
                d = {k: v.numpy() for k, v in res.items() if k != "out_words"}
                d.update(seed=seed, group=grp, f_key=keys[lo:lo + block])
                rows.append(pd.DataFrame(d))
    df = pd.concat(rows, ignore_index=True)
    df.attrs["f_counts"] = counts
    df.attrs["n_nets"] = n_nets
    return df


# =============================================================================================
# 3. trained networks on load_digits: straightforward vs "draw the llama, then delete it"
def llama_features(x_train: torch.Tensor, x_other: torch.Tensor, k: int, seed: int):
    """``k`` irrelevant nonlinear features of the pixels: ``z_j = (p_j . u)(q_j . u)`` with
    ``u`` the standardised pixels and ``p_j, q_j ~ N(0, I / d)`` fixed by ``seed``, each
    standardised on the training inputs. A product of two projections has (near) zero linear
    correlation with the pixels, so a linear read-out of the input cannot recover it: a layer
    that linearly encodes it has *computed* something, not merely kept the input.
    Returns ``(z_train (N, k), z_other (N', k))``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mu, sd = x_train.mean(0), x_train.std(0) + 0.1
    g = generator("llama-features", int(seed))
    d = x_train.shape[1]
    p = torch.randn(d, k, generator=g) / math.sqrt(d)
    q = torch.randn(d, k, generator=g) / math.sqrt(d)

    def raw(x):
        u = (x - mu) / sd
        return (u @ p) * (u @ q)

    zt = raw(x_train)
    zm, zs = zt.mean(0), zt.std(0)
    return (zt - zm) / zs, (raw(x_other) - zm) / zs


def _per_network(z: torch.Tensor, s: int) -> torch.Tensor:
    """Targets for ``2 s`` networks (plain first, then llama): ``(N, k)`` is shared as is;
    ``(S, N, k)`` gives seed ``i``'s targets to networks ``i`` and ``i + S``."""
    if z.dim() == 2:
        return z
    if z.dim() != 3 or z.shape[0] != s:
        raise ValueError(f"llama targets must be (N, k) or ({s}, N, k), got {tuple(z.shape)}")
    return torch.cat([z, z])


def train_llama_pairs(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, seeds, *,
                      hidden=(32, 32), aux_weight: float = 1.0, lr: float = 3e-3,
                      target_loss: float = 0.05, max_steps: int = 3000):
    """Train, as one batch, a *plain* network and a *llama* network for every seed, from the
    same initialisation (network ``i`` and ``i + S`` share seed ``seeds[i]``).

    Both minimise the digit cross-entropy (full batch, Adam, :func:`countingargs.nets.train.
    train_until`); the llama network also minimises ``aux_weight`` x the mean squared error of a
    linear head from the *last hidden layer* to the llama features ``z`` ("draw the llama"):
    ``(N, k)`` shared by every seed, or ``(S, N, k)``, seed ``i``'s own llama. Each network is
    frozen the first step its training cross-entropy is ``<= target_loss`` (matched task loss);
    the head is then discarded ("delete it").

    Returns ``(model, info)``: a :class:`~countingargs.nets.mlp.BatchedMLP` of the ``2S``
    networks as frozen (plain first) and a DataFrame ``seed, condition, reached, steps,
    train_ce, aux_mse`` (cross-entropy and head error of the frozen networks).
    """
    from ...nets.losses import cross_entropy
    from ...nets.mlp import BatchedMLP, forward
    from ...nets.train import train_until

    seeds = [int(s) for s in seeds]
    s = len(seeds)
    if s < 1:
        raise ValueError("need at least one seed")
    sizes = [x.shape[1], *hidden, int(y.max()) + 1]
    init = [seed_int("llama-init", sd) for sd in seeds]
    model = BatchedMLP(2 * s, sizes, seeds=init + init)
    z = _per_network(z, s)
    k = z.shape[-1]
    head_w = torch.stack([torch.randn(hidden[-1], k, generator=generator("llama-head", sd))
                          for sd in seeds + seeds]) / math.sqrt(hidden[-1])
    head_b = torch.zeros(2 * s, 1, k)
    alpha = torch.cat([torch.zeros(s), torch.full((s,), float(aux_weight))])
    n_layers = len(model.weights)

    def losses(params, ids):
        """(task cross-entropy, head error) of networks ``ids``, each ``(len(ids),)``."""
        layers = [(params[2 * i], params[2 * i + 1]) for i in range(n_layers)]
        logits, hid = forward(layers, x, return_hidden=True)
        aux = ((torch.baddbmm(params[-1], hid[-1], params[-2]) - z[ids]) ** 2).mean((1, 2))
        return cross_entropy(logits, y), aux

    def loss_fn(params, ids, step):
        ce, aux = losses(params, ids)
        return ce + alpha[ids] * aux

    start = [t.detach() for w, b in model.layers() for t in (w, b)] + [head_w, head_b]
    res = train_until(start, loss_fn, lr=lr, max_steps=max_steps, optimizer="adam",
                      reached=lambda p, ids, step: losses(p, ids)[0] <= target_loss)
    with torch.no_grad():
        for i in range(n_layers):
            model.weights[i].copy_(res.params[2 * i])
            model.biases[i].copy_(res.params[2 * i + 1])
        ce, aux = losses(res.params, torch.arange(2 * s))
    reached = res.reached
    info = pd.DataFrame({"seed": seeds + seeds, "condition": ["plain"] * s + ["llama"] * s,
                         "reached": reached, "steps": np.where(reached, res.steps, -1),
                         "train_ce": np.where(reached, ce.numpy(), np.nan),
                         "aux_mse": np.where(reached, aux.numpy(), np.nan)})
    return model, info


def encoding_table(model, x_train, x_test, z_train, z_test, c_train, c_test, info,
                   n_groups: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """How strongly each network's last hidden layer encodes the llama ``z`` (``k`` features;
    ``(N, k)`` shared or ``(S, N, k)`` per seed, as in :func:`train_llama_pairs`) compared with
    control features ``c (N, kc)`` built the same way, and with the raw input.

    The llama's score is its mean held-out probe R^2 over its ``k`` features. The controls give
    the null distribution: ``n_groups`` random groups of ``k`` control features (the same groups
    for every network), each scored the same way. The llama is encoded *specifically* when its
    score exceeds the ``level`` quantile of the group scores: if the llama were just another
    feature of its kind, that would happen with probability ``1 - level``.

    Returns ``info`` with columns ``r2_llama``, ``r2_controls`` (mean over all controls),
    ``r2_controls_q`` (the ``level`` quantile of the group scores), ``r2_input_llama`` (probe
    from the pixels), ``llama_rank`` (fraction of control groups the llama beats) and
    ``specific``."""
    from ...estimators.probes import ridge_r2_heldout

    k, kc = z_train.shape[-1], c_train.shape[-1]
    if kc < k:
        raise ValueError(f"need at least as many control features ({kc}) as llama features ({k})")
    s = len(info) // 2
    z_train, z_test = _per_network(z_train, s), _per_network(z_test, s)
    with torch.no_grad():
        _, htr = model(x_train, return_hidden=True)
        _, hte = model(x_test, return_hidden=True)
    m = htr[-1].shape[0]
    # held-out probes: the hidden layer (32 units) is fitted on the training digits and scored
    # on the test digits, so a probe cannot score by memorising
    r_l = ridge_r2_heldout(htr[-1], z_train, hte[-1], z_test)  # (M, k)
    r_c = ridge_r2_heldout(htr[-1], c_train, hte[-1], c_test)  # (M, kc)
    r_in = ridge_r2_heldout(x_train.expand(m, *x_train.shape), z_train,
                            x_test.expand(m, *x_test.shape), z_test)  # (M, k)
    g = generator("control-groups", int(seed))
    groups = torch.stack([torch.randperm(kc, generator=g)[:k] for _ in range(n_groups)])  # (G, k)
    group_scores = r_c[:, groups].mean(-1)  # (M, G)
    score = r_l.mean(1)
    q = torch.quantile(group_scores, level, dim=1)
    out = info.copy()
    out["r2_llama"] = score.numpy()
    out["r2_controls"] = r_c.mean(1).numpy()
    out["r2_controls_q"] = q.numpy()
    out["r2_input_llama"] = r_in.mean(1).numpy()
    out["llama_rank"] = (score[:, None] > group_scores).float().mean(1).numpy()
    out["specific"] = (score > q).numpy()
    return out


# =============================================================================================
# the notebook's runs: each returns tidy tables
def run_enumeration(enum_sizes) -> pd.DataFrame:
    """Exact counts for every ``[n, h]`` in ``enum_sizes``: the rows of :func:`counting_table`
    for each size, with ``log10_ratio_free`` = log10((unread + cancelled) / straightforward)
    (nan when the extra volume is 0), plus ``n_params`` and ``n_configs`` of the size."""
    from ...stats import progress

    if any(len(s) != 2 for s in enum_sizes):
        raise ValueError("enum_sizes must be a list of [inputs, hidden units] pairs")
    parts = []
    for n_in, h in progress(enum_sizes, desc="enumerate"):
        res = enumerate_threshold_nets(int(n_in), int(h))
        if res["counted"] != res["n_configs"]:
            raise RuntimeError(f"enumeration of n={n_in}, H={h} counted {res['counted']} of "
                               f"{res['n_configs']}")
        t = counting_table(res)
        extra = t.v_unread + t.v_cancelled
        with np.errstate(divide="ignore"):
            t["log10_ratio_free"] = np.where(extra > 0, np.log10(extra / t.v_straightforward), np.nan)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def run_sampled_counts(sizes, n_samples: int) -> pd.DataFrame:
    """:func:`sample_threshold_nets` at every ``[n, h]`` of ``sizes`` (stream
    ``seed_int("threshold-sampling", n, h)``), ``n_samples`` configurations each."""
    from ...stats import progress

    if any(len(s) != 2 for s in sizes):
        raise ValueError("sampled sizes must be a list of [inputs, hidden units] pairs")
    return pd.concat([sample_threshold_nets(int(n), int(h), int(n_samples),
                                            seed_int("threshold-sampling", int(n), int(h)))
                      for n, h in progress(sizes, desc="sample sizes")], ignore_index=True)


def run_sampling(seeds, n_nets: int, family: pd.DataFrame, *, sigma_w: float, sigma_b: float,
                 max_analysed: int, scheduler: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Experiment 2 over independent sampling streams ``seeds`` (stream ``s`` draws with
    ``seed_int("llama-sampling", s)``): ``(networks, counts)``, the analysed networks of
    :func:`sample_llamas` for every stream (column ``seed`` = ``s``), and per stream ``seed,
    n_nets, n_constant, n_distinct_functions``."""
    from ...stats import progress

    parts, counts = [], []
    for s in progress(seeds, desc="sample"):
        d = sample_llamas(n_nets, seed_int("llama-sampling", s), family, sigma_w=sigma_w,
                          sigma_b=sigma_b, max_analysed=max_analysed, scheduler=scheduler)
        d["seed"] = s
        parts.append(d)
        f_counts = d.attrs["f_counts"]
        n_const = sum(v for k, v in f_counts.items() if k in ("00" * 16, "ff" * 16))
        counts.append({"seed": s, "n_nets": n_nets, "n_constant": n_const,
                       "n_distinct_functions": len(f_counts), "family_size": len(family)})
    return pd.concat(parts, ignore_index=True), pd.DataFrame(counts)


def train_chunk(seed: int, chunk: int, seeds: list, *, llama_k: int, hidden: int,
                aux_weight: float, lr: float, target_loss: float, max_steps: int):
    """A group of seeds of :func:`run_training` (a unit of :func:`countingargs.chunks.map_chunks`):
    the digits and each seed's llama are rebuilt here, and :func:`train_llama_pairs` trains the
    plain and llama network of every seed of ``seeds`` as one batch. A network's randomness
    (initial weights, head, llama) comes from its own seed and the training is full batch, so
    it ends the same whichever seeds share its chunk (``seed``, the group's first seed, and
    ``chunk`` only name the chunk).

    Returns ``(params, info)``: the frozen networks' weights and biases as numpy arrays
    ``[W0, b0, W1, b1, ...]`` (``2 len(seeds)`` networks, plain first) and the table of
    :func:`train_llama_pairs`."""
    from ...data.digits import digits_split

    split = digits_split()
    xtr, ytr = split.x_pool, split.y_pool
    seeds = [int(s) for s in seeds]
    z = torch.stack([llama_features(xtr, split.x_test, llama_k, seed=seed_int("llama", s))[0]
                     for s in seeds])
    model, info = train_llama_pairs(xtr, ytr, z, seeds, hidden=(hidden, hidden),
                                    aux_weight=aux_weight, lr=lr, target_loss=target_loss,
                                    max_steps=max_steps)
    return [t.detach().numpy().copy() for w, b in model.layers() for t in (w, b)], info


def _merge_pairs(parts, sizes):
    """One :class:`~countingargs.nets.mlp.BatchedMLP` (every chunk's plain networks, then every
    chunk's llama networks) and its table, from the ``(params, info)`` of :func:`train_chunk`."""
    from ...nets.mlp import BatchedMLP

    half = [len(info) // 2 for _, info in parts]
    order = [(p, slice(0, h)) for (p, _), h in zip(parts, half)]
    order += [(p, slice(h, 2 * h)) for (p, _), h in zip(parts, half)]
    model = BatchedMLP(2 * sum(half), sizes)
    with torch.no_grad():
        for i, t in enumerate(list(model.weights) + list(model.biases)):
            j = 2 * i if i < len(model.weights) else 2 * (i - len(model.weights)) + 1
            t.copy_(torch.from_numpy(np.concatenate([p[j][sl] for p, sl in order])))
    info = pd.concat([info.iloc[:h] for (_, info), h in zip(parts, half)]
                     + [info.iloc[h:] for (_, info), h in zip(parts, half)], ignore_index=True)
    return model, info


def run_training(seeds, *, llama_k: int, n_controls: int, hidden: int, aux_weight: float,
                 lr: float, target_loss: float, max_steps: int, seeds_per_chunk: int = 16,
                 scheduler: str | None = None):
    """Experiment 3, training: a plain and a llama network per seed on the digits (each seed
    with its own llama), frozen at ``target_loss``; their encoding of the llama against control
    features (:func:`encoding_table`), test accuracy and weight norm.

    The seeds are trained in groups of ``seeds_per_chunk`` (:func:`train_chunk`, run by
    :func:`countingargs.chunks.map_chunks` on ``scheduler``); the networks come out the same
    bit for bit whatever the grouping and wherever the chunks run (on CPU).

    Returns ``(trained, model, data)``: the table (one row per network, plain first), the
    :class:`~countingargs.nets.mlp.BatchedMLP` of the ``2 S`` networks and ``data`` (a dict with
    the training inputs ``x (N, 64)`` and labels ``y (N,)``, for the LLC and volume)."""
    from ...chunks import map_chunks
    from ...data.digits import digits_split
    from ...estimators.llc import mlp_params
    from ...estimators.volume import balance_relu_mlp, params_norm

    if seeds_per_chunk < 1:
        raise ValueError(f"seeds_per_chunk must be >= 1, got {seeds_per_chunk}")
    split = digits_split()
    xtr, ytr, xte = split.x_pool, split.y_pool, split.x_test
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    groups = [seeds[i:i + seeds_per_chunk] for i in range(0, len(seeds), seeds_per_chunk)]
    tasks = [dict(seed=g[0], chunk=ci, seeds=g, llama_k=llama_k, hidden=hidden,
                  aux_weight=aux_weight, lr=lr, target_loss=target_loss, max_steps=max_steps)
             for ci, g in enumerate(groups)]
    parts = map_chunks(train_chunk, tasks, name="train_llama_pairs", scheduler=scheduler,
                       threads=None).results
    model, info = _merge_pairs(parts, [xtr.shape[1], hidden, hidden, int(ytr.max()) + 1])
    zz = [llama_features(xtr, xte, llama_k, seed=seed_int("llama", s)) for s in seeds]
    z_tr, z_te = torch.stack([a for a, _ in zz]), torch.stack([b for _, b in zz])
    c_tr, c_te = llama_features(xtr, xte, n_controls, seed=seed_int("controls"))
    enc = encoding_table(model, xtr, xte, z_tr, z_te, c_tr, c_te, info)
    with torch.no_grad():
        logits = model(xte)
    enc["test_acc"] = (logits.argmax(-1) == split.y_test).float().mean(1).numpy()
    params = mlp_params(model)
    enc["weight_norm"] = params_norm(params).numpy()
    enc["weight_norm_balanced"] = params_norm(balance_relu_mlp(params)).numpy()
    return enc, model, {"x": xtr, "y": ytr}


def _pair_index(trained: pd.DataFrame, n_pairs: int) -> list[int]:
    """Rows of the first ``n_pairs`` plain networks and their llama partners."""
    s = len(trained) // 2
    if n_pairs > s:
        raise ValueError(f"llc_seeds ({n_pairs}) cannot exceed train_seeds ({s})")
    return list(range(n_pairs)) + [s + i for i in range(n_pairs)]


def _balanced_pairs(model, trained: pd.DataFrame, n_pairs: int):
    """``(idx, params)``: the rows of the measured pairs and their weights rescaled to the
    balanced representative (:func:`countingargs.estimators.volume.balance_relu_mlp`; same
    functions, same losses, smallest norm on the ReLU rescaling orbit)."""
    from ...estimators.llc import mlp_params
    from ...estimators.volume import balance_relu_mlp

    idx = _pair_index(trained, n_pairs)
    return idx, balance_relu_mlp(mlp_params(model, idx))


def run_network_checks(model, data: dict, trained: pd.DataFrame, n_pairs: int) -> pd.DataFrame:
    """What the estimators need to know about each measured network (balanced weights): one row
    per network, ``seed, condition, reached, init_loss, weight_norm`` (balanced),
    ``grad_norm`` (of the training loss at the network) and ``top_eig`` (largest Hessian
    eigenvalue of the training loss, by power iteration)."""
    from ...estimators import llc
    from ...estimators.volume import params_norm

    idx, params = _balanced_pairs(model, trained, n_pairs)
    loss_fn = llc.mlp_loss_fn(data["x"], data["y"])
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(theta)
    grads = torch.autograd.grad(loss.sum(), list(theta.values()))
    gnorm = torch.sqrt(sum((g ** 2).flatten(1).sum(1) for g in grads))
    eig = llc.top_hessian_eigenvalue(loss_fn, params, n_iter=30, seed=seed_int("hessian"))
    rows = trained.iloc[idx][["seed", "condition", "reached"]].reset_index(drop=True)
    rows["init_loss"] = loss.detach().numpy()
    rows["weight_norm"] = params_norm(params).numpy()
    rows["grad_norm"] = gnorm.detach().numpy()
    rows["top_eig"] = eig
    return rows


def llc_chunk(seed: int, chunk: int, point_ids: list, params: dict, *, step_size: float,
              localization: float, n_burnin: int, n_chains: int, n_draws: int, x=None, y=None):
    """A group of networks at one setting of :func:`run_llc` (a unit of
    :func:`countingargs.chunks.map_chunks`): their LLC of the task loss on the training digits
    (rebuilt here; or ``x``, ``y`` when given). ``params``: the networks' weights
    ``{"w0": (K, ...), ...}`` (numpy arrays or tensors); ``point_ids``: their indices in the
    whole experiment, from which the chains of each draw their own noise stream
    ``(seed, "llc-point", id)``, so a network's estimate does not depend on which networks
    share its chunk. Returns ``llc_mean, llc_std, init_loss, diverged, drift`` (numpy, one per
    network) and ``n_beta``."""
    from ...estimators import llc

    if x is None:
        from ...data.digits import digits_split

        split = digits_split()
        x, y = split.x_pool, split.y_pool
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    theta = {k: torch.as_tensor(v) for k, v in params.items()}
    r = llc.estimate_llc_batch(llc.mlp_loss_fn(x, y), theta, len(y), step_size=step_size,
                               localization=localization, n_chains=n_chains, n_draws=n_draws,
                               n_burnin=int(n_burnin), seed=seed, point_ids=point_ids)
    out = {k: r[k] for k in ("llc_mean", "llc_std", "init_loss", "diverged", "drift")}
    out["n_beta"] = r["settings"]["n_beta"]
    return out


def _is_digits_pool(data: dict) -> bool:
    """Whether ``data`` is the training pool of :func:`countingargs.data.digits.digits_split`
    (then the chunks rebuild it instead of carrying it)."""
    from ...data.digits import digits_split

    split = digits_split()
    return (data["x"].shape == split.x_pool.shape and data["y"].shape == split.y_pool.shape
            and torch.equal(data["x"], split.x_pool) and torch.equal(data["y"], split.y_pool))


def run_llc(model, data: dict, trained: pd.DataFrame, n_pairs: int, settings, *, n_chains: int,
            n_draws: int, reference=FIRST_VERSION_LLC, networks_per_chunk: int = 16,
            scheduler: str | None = None) -> pd.DataFrame:
    """LLC of the task loss for the first ``n_pairs`` pairs (balanced weights) under each
    ``[step, localization, burn-in]`` of ``settings`` (the first is the main one), and under the
    ``reference`` setting (the first version's; ``None`` to skip it), with ``n_beta = n / log n``.
    One row per setting x network: ``setting, main, reference, step_size, localization,
    n_burnin, n_draws, n_beta, seed, condition, reached, llc, llc_chain_std, init_loss, diverged,
    drift`` (``n_beta`` x (mean sampled loss in the second half of the draws minus the first
    half): how far the estimate was still moving, in LLC units).

    Chunks (:func:`llc_chunk`, run by :func:`countingargs.chunks.map_chunks` on ``scheduler``):
    one per setting and group of ``networks_per_chunk`` networks. Setting ``si`` uses the noise
    seed ``seed_int("llc", si)``, and the chains of a network draw their own stream from it and
    the network's row in ``trained``, so the numbers are the same whatever the grouping and
    wherever the chunks run (on CPU)."""
    from ...chunks import map_chunks

    if networks_per_chunk < 1:
        raise ValueError(f"networks_per_chunk must be >= 1, got {networks_per_chunk}")
    idx, params = _balanced_pairs(model, trained, n_pairs)
    xy = {} if _is_digits_pool(data) else {"x": data["x"].numpy(), "y": data["y"].numpy()}
    runs = [list(s) for s in settings] + ([list(reference)] if reference is not None else [])
    tasks = []
    for si, (step, loc, burnin) in enumerate(runs):
        for lo in range(0, len(idx), networks_per_chunk):
            sl = slice(lo, lo + networks_per_chunk)
            tasks.append(dict(seed=seed_int("llc", si), chunk=len(tasks), point_ids=idx[sl],
                              params={k: v[sl].numpy() for k, v in params.items()},
                              step_size=step, localization=loc, n_burnin=int(burnin),
                              n_chains=n_chains, n_draws=n_draws, **xy))
    results = iter(map_chunks(llc_chunk, tasks, name="llc", scheduler=scheduler,
                              threads=None).results)
    rows = []
    for si, (step, loc, burnin) in enumerate(runs):
        for lo in range(0, len(idx), networks_per_chunk):
            r = next(results)
            for j, net in enumerate(idx[lo:lo + networks_per_chunk]):
                rows.append({"setting": si, "main": si == 0, "reference": si >= len(settings),
                             "step_size": step, "localization": loc,
                             "n_burnin": int(burnin), "n_draws": n_draws,
                             "n_beta": r["n_beta"],
                             "seed": int(trained.seed.iloc[net]),
                             "condition": trained.condition.iloc[net],
                             "reached": bool(trained.reached.iloc[net]), "llc": r["llc_mean"][j],
                             "llc_chain_std": r["llc_std"][j], "init_loss": r["init_loss"][j],
                             "diverged": bool(r["diverged"][j]), "drift": r["drift"][j]})
    return pd.DataFrame(rows)


def run_volume(model, data: dict, trained: pd.DataFrame, n_pairs: int, radii_rel, tol: float,
               n_samples: int, radii_abs=FIRST_VERSION_RADII) -> pd.DataFrame:
    """Local volume of the first ``n_pairs`` pairs (balanced weights), at radii relative to each
    network's norm (``kind = "relative"``, the comparison that controls for norm) and at the
    absolute radii of the first version of the chapter (``kind = "absolute"``). One row per
    network x radius: ``kind, radius_rel, radius, seed, condition, reached, weight_norm,
    fraction, mean_increase``; the same random directions for every network."""
    from ...estimators import llc
    from ...estimators.volume import local_volume_batch, params_norm

    idx, params = _balanced_pairs(model, trained, n_pairs)
    norm = params_norm(params).double().numpy()
    loss_fn = llc.mlp_loss_fn(data["x"], data["y"])
    rel = np.asarray(radii_rel, dtype=float)
    rows = []
    for kind, radii in (("relative", rel[None, :] * norm[:, None]),
                        ("absolute", np.asarray(radii_abs, dtype=float))):
        vol = local_volume_batch(loss_fn, params, radii, tol, n_samples=n_samples,
                                 seed=seed_int("volume"))
        r2 = np.broadcast_to(radii, (len(idx), radii.shape[-1]))
        for j, net in enumerate(idx):
            for ri in range(r2.shape[1]):
                rows.append({"kind": kind, "radius_rel": r2[j, ri] / norm[j],
                             "radius": r2[j, ri], "seed": int(trained.seed.iloc[net]),
                             "condition": trained.condition.iloc[net],
                             "reached": bool(trained.reached.iloc[net]),
                             "weight_norm": norm[j], "fraction": vol["fraction"][j, ri],
                             "mean_increase": vol["mean_increase"][j, ri]})
    return pd.DataFrame(rows)


def run_toys(settings, *, n: int, n_chains: int, n_draws: int) -> pd.DataFrame:
    """The LLC estimator on the toys with known learning coefficients
    (:data:`countingargs.estimators.llc.TOYS`) at each of the chapter's ``[step, localization,
    burn-in]`` settings, with the chapter's ``n`` (so the same ``n_beta``) and draws. One row
    per setting x toy x chain: ``setting, step_size, localization, n_burnin, n_beta, toy, true_lambda,
    multiplicity, expected, chain, llc, drift``."""
    from ...estimators import llc

    parts = []
    for si, (step, loc, burnin) in enumerate(settings):
        t = llc.validate_on_toys(n, step_size=step, localization=loc, n_chains=n_chains,
                                 n_draws=n_draws, n_burnin=int(burnin), seed=seed_int("toys", si))
        t.insert(0, "n_beta", llc.default_n_beta(n))
        t.insert(0, "n_burnin", int(burnin))
        t.insert(0, "localization", loc)
        t.insert(0, "step_size", step)
        t.insert(0, "setting", si)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def check_params(params: dict) -> None:
    """Refuse parameter values the chapter cannot use, naming the parameter."""
    if params["sample_seeds"] < 2 or params["llc_seeds"] < 2:
        raise ValueError("sample_seeds and llc_seeds must be at least 2 for intervals over seeds")
    if params["llc_seeds"] > params["train_seeds"]:
        raise ValueError(f"llc_seeds ({params['llc_seeds']}) cannot exceed train_seeds "
                         f"({params['train_seeds']})")
    for name in ("enum_sizes", "sampled_sizes"):
        if any(len(s) != 2 for s in params[name]):
            raise ValueError(f"{name} must be a list of [inputs, hidden units] pairs")
    if any(len(s) != 3 for s in params["llc_alt"]):
        raise ValueError("llc_alt must be a list of [step, localization, burn-in] triples")
    if not all(0 < r < 1 for r in params["vol_radii_rel"]):
        raise ValueError("vol_radii_rel are fractions of the weight norm: each must lie in (0, 1)")
