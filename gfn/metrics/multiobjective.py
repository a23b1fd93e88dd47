"""Multi-objective metrics: Pareto fronts, hypervolume, IGD, R2, PC-entropy, top-k diversity, and
exact per-preference targets of preference-conditioned GFlowNets on enumerable environments.

All objectives are *maximised* (they are rewards).  Hypervolume uses ``moocore`` (the maintained
C library of Lopez-Ibanez et al., ``pip install moocore``, in the ``moo`` extra) when it is
installed, and otherwise an exact implementation of our own for ``k <= 3`` (sweep in 2-D, slices
along the last objective in 3-D); both are checked against a brute-force cell decomposition in
``tests/test_multiobjective_metrics.py``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from gfn.metrics.exact import exact_terminal_distribution, terminal_mask, tv
from gfn.states import batch_index


def _points(points, name: str = "points") -> torch.Tensor:
    p = torch.as_tensor(points, dtype=torch.float64)
    if p.dim() != 2 or p.shape[1] < 1:
        raise ValueError(f"{name} must have shape [n, k], got {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"{name} must be finite")
    return p


# ============================================================================ Pareto front
def _dominated_by(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[len(b)]``: whether some row of ``a`` dominates each row of ``b`` (maximisation)."""
    if a.shape[0] == 0:
        return torch.zeros(b.shape[0], dtype=torch.bool)
    ge = (a.unsqueeze(1) >= b.unsqueeze(0)).all(-1)
    gt = (a.unsqueeze(1) > b.unsqueeze(0)).any(-1)
    return (ge & gt).any(0)


def pareto_mask(points, chunk: int = 2048) -> torch.Tensor:
    """Boolean ``[n]``: True where no other point dominates (>= in every objective, > in one).

    Points are visited in decreasing order of their sum (only a point with a larger sum can
    dominate), chunk by chunk, each compared with the front found so far and with its own chunk,
    so the cost is ``n * (|front| + chunk)`` comparisons.  Duplicates are all kept.
    """
    p = _points(points)
    n = p.shape[0]
    order = torch.argsort(p.sum(1), descending=True, stable=True)
    keep = torch.zeros(n, dtype=torch.bool)
    front = p[:0]
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        c = p[idx]
        # first against the front so far (small), then the survivors among themselves
        dominated = _dominated_by(front, c)
        alive = (~dominated).nonzero().squeeze(1)
        if alive.numel():
            dominated[alive] = _dominated_by(c[alive], c[alive])
        keep[idx] = ~dominated
        front = torch.cat([front, c[~dominated]])
    return keep


def pareto_front(points) -> torch.Tensor:
    """The non-dominated points (float64, duplicates removed), sorted by the first objective."""
    p = _points(points)
    f = torch.unique(p[pareto_mask(p)], dim=0)
    return f[torch.argsort(f[:, 0], stable=True)]


# ============================================================================ hypervolume
def _hv2d(p: torch.Tensor, ref: torch.Tensor) -> float:
    """Area dominated by 2-D points (all > ref) above ``ref``."""
    if p.shape[0] == 0:
        return 0.0
    p = p[torch.argsort(p[:, 0], descending=True, stable=True)]
    x = torch.cat([p[:, 0], ref[:1]])
    ymax = torch.cummax(p[:, 1], 0).values
    return float(((x[:-1] - x[1:]) * (ymax - ref[1])).sum())


def _hv3d(p: torch.Tensor, ref: torch.Tensor) -> float:
    """Volume dominated by 3-D points above ``ref``: slices between consecutive third coordinates."""
    if p.shape[0] == 0:
        return 0.0
    p = p[pareto_mask(p)]
    p = p[torch.argsort(p[:, 2], descending=True, stable=True)]
    z = torch.cat([p[:, 2], ref[2:]])
    total = 0.0
    for i in range(p.shape[0]):  # metric code, |front| slices
        dz = float(z[i] - z[i + 1])
        if dz > 0:
            total += dz * _hv2d(p[:i + 1, :2], ref[:2])
    return total


def hypervolume_own(points, ref) -> float:
    """Exact hypervolume (maximisation) for ``k <= 3`` without extra packages."""
    p = _points(points)
    r = torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
    if r.numel() != p.shape[1]:
        raise ValueError(f"reference point has {r.numel()} coordinates, points have {p.shape[1]}")
    p = p[(p > r).all(1)]  # points that do not strictly dominate ref add no volume
    k = r.numel()
    if k == 1:
        return float((p[:, 0].max() - r[0]).item()) if p.shape[0] else 0.0
    if k == 2:
        return _hv2d(p, r)
    if k == 3:
        return _hv3d(p, r)
    raise ValueError(f"exact hypervolume without moocore is implemented for k <= 3 objectives, got k={k}; "
                     "pip install moocore (the 'moo' extra)")


def hypervolume(points, ref, backend: str = "auto") -> float:
    """Volume of the region dominated by ``points`` and dominating the reference point ``ref``
    (all objectives maximised).  ``backend``: ``moocore``, ``own`` (k <= 3) or ``auto``."""
    p = _points(points)
    r = torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
    if r.numel() != p.shape[1]:
        raise ValueError(f"reference point has {r.numel()} coordinates, points have {p.shape[1]}")
    if backend not in ("auto", "moocore", "own"):
        raise ValueError(f"hypervolume backend must be auto, moocore or own, got {backend!r}")
    if backend != "own":
        try:
            import moocore
        except ImportError:
            if backend == "moocore":
                raise ImportError("hypervolume(backend='moocore') needs moocore: pip install moocore") from None
        else:
            p = p[(p > r).all(1)]
            if p.shape[0] == 0:
                return 0.0
            return float(moocore.hypervolume((-p).numpy(), ref=(-r).numpy()))  # moocore minimises
    return hypervolume_own(p, r)


# ============================================================================ distances to a reference front
def igd(points, reference_front) -> float:
    """Inverted generational distance: mean over reference-front points of the Euclidean distance
    to the nearest of ``points`` (0 when every front point was generated)."""
    p, f = _points(points), _points(reference_front, "reference_front")
    return float(torch.cdist(f, p).min(1).values.mean())


def r2_indicator(points, weights, utopia) -> float:
    """R2 indicator (lower is better): mean over weight vectors ``w`` of
    ``min_x max_i w_i |z*_i - y_i(x)|`` with the utopian point ``z*``."""
    p, w = _points(points), _points(weights, "weights")
    z = torch.as_tensor(utopia, dtype=torch.float64).reshape(1, 1, -1)
    dev = (w.unsqueeze(1) * (z - p.unsqueeze(0)).abs()).max(-1).values  # [W, n]
    return float(dev.min(1).values.mean())


def pc_entropy(points, reference_front) -> float:
    """Pareto-clusters entropy: each point is assigned to its nearest reference-front point; the
    entropy (nats) of the resulting cluster histogram (high = the samples spread along the front)."""
    p, f = _points(points), _points(reference_front, "reference_front")
    nearest = torch.cdist(p, f).argmin(1)
    q = torch.bincount(nearest, minlength=f.shape[0]).double()
    q = q[q > 0] / q.sum()
    return float(-(q * q.log()).sum())


def topk_diversity(features: torch.Tensor, scores: torch.Tensor, k: int = 10,
                   distance: str | Callable = "hamming") -> float:
    """Mean pairwise distance among the ``k`` highest-scoring objects (``features [n, d]``).
    ``distance``: ``hamming`` (count of differing entries), ``l2``, or a callable ``(a, b) -> [n, m]``."""
    if features.shape[0] != scores.shape[0]:
        raise ValueError(f"{features.shape[0]} objects but {scores.shape[0]} scores")
    k = min(int(k), features.shape[0])
    if k < 2:
        return 0.0
    top = features[torch.topk(scores.double(), k).indices]
    if callable(distance):
        d = distance(top, top)
    elif distance == "hamming":
        d = (top.unsqueeze(1) != top.unsqueeze(0)).reshape(k, k, -1).sum(-1).double()
    elif distance == "l2":
        d = torch.cdist(top.double().reshape(k, -1), top.double().reshape(k, -1))
    else:
        raise ValueError(f"distance must be 'hamming', 'l2' or a callable, got {distance!r}")
    return float(d.double().sum() / (k * (k - 1)))


def moo_sample_metrics(objectives, reference_front=None, ref_point=None, prefs=None, utopia=None,
                       prefix: str = "") -> dict:
    """``hypervolume``, and with a reference front ``hypervolume_ratio`` (to the front's), ``igd``,
    ``pc_entropy``, ``r2`` of a set of sampled objective vectors ``[n, k]``."""
    y = _points(objectives, "objectives")
    k = y.shape[1]
    ref = torch.zeros(k, dtype=torch.float64) if ref_point is None else torch.as_tensor(ref_point, dtype=torch.float64)
    out = {f"{prefix}hypervolume": hypervolume(y, ref)}
    if reference_front is not None:
        f = _points(reference_front, "reference_front")
        hv_f = hypervolume(f, ref)
        out[f"{prefix}hypervolume_ratio"] = out[f"{prefix}hypervolume"] / hv_f if hv_f > 0 else float("nan")
        out[f"{prefix}igd"] = igd(y, f)
        out[f"{prefix}pc_entropy"] = pc_entropy(y, f)
        z = f.max(0).values if utopia is None else torch.as_tensor(utopia, dtype=torch.float64)
        if prefs is not None:
            out[f"{prefix}r2"] = r2_indicator(y, prefs, z)
    return {k_: v for k_, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


# ============================================================================ exact, per preference
def enumerated_log_objectives(env) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log R [M, k] float64, terminal [M] bool)`` over ``env.enumerate_states()``: the log
    objective values of every state that can be a sampled object (``-inf`` rows elsewhere, whose
    rewards are never asked for) and the terminal mask."""
    from gfn.preferences import checked_log_rewards, is_multi_objective
    if not env.is_enumerable:
        raise ValueError(f"{type(env).__name__} is not enumerable: exact multi-objective metrics are unavailable")
    if not is_multi_objective(env):
        raise ValueError(f"{type(env).__name__} has no vector rewards (a MultiObjectiveReward)")
    states = env.enumerate_states()
    term = terminal_mask(env, states)
    rows = term.nonzero().squeeze(1)
    lr = torch.full((term.shape[0], env.reward.n_objectives), float("-inf"), dtype=torch.float64, device=term.device)
    lr[rows] = checked_log_rewards(env, batch_index(states, rows)).double()
    return lr, term


def enumerated_objectives(env) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R [M, k] float64, terminal [M] bool)``: objective values (not logs) of every state
    (0 at states that cannot terminate) and whether it can be a sampled object."""
    lr, term = enumerated_log_objectives(env)
    return lr.exp(), term


def exact_pareto_front(env) -> torch.Tensor:
    """The exact Pareto front of an enumerable env's objectives (``[F, k]`` float64)."""
    r, term = enumerated_objectives(env)
    return pareto_front(r[term])


def exact_preference_targets(env, conds: torch.Tensor, method: str = "weighted_sum", with_beta: bool = False,
                             beta: float = 1.0) -> torch.Tensor:
    """``[P, M]``: the target ``R(x | w, beta) / Z(w, beta)`` over ``env.enumerate_states()`` for
    each conditioning vector (0 at states that cannot terminate); each row sums to 1."""
    from gfn.preferences import scalarize_cond
    lr, term = enumerated_log_objectives(env)
    lr_t = lr[term]
    conds = torch.as_tensor(conds, dtype=torch.float64)
    out = []
    for c in conds:  # one row per preference (P is small)
        s = torch.full((term.shape[0],), float("-inf"), dtype=torch.float64, device=term.device)
        s[term] = scalarize_cond(lr_t, c.reshape(1, -1).expand(lr_t.shape[0], -1), method, with_beta, beta)
        if not bool(torch.isfinite(s).any()):
            raise ValueError(f"preference {c.tolist()} gives every object zero reward: no target distribution")
        out.append(torch.softmax(s, 0))
    return torch.stack(out)


def exact_log_partitions(env, conds: torch.Tensor, method: str = "weighted_sum", with_beta: bool = False,
                         beta: float = 1.0) -> torch.Tensor:
    """``[P]``: exact ``log Z(w, beta) = log sum_x R(x | w, beta)`` for each conditioning vector."""
    from gfn.preferences import scalarize_cond
    lr, term = enumerated_log_objectives(env)
    lr = lr[term]
    conds = torch.as_tensor(conds, dtype=torch.float64)
    return torch.stack([torch.logsumexp(scalarize_cond(lr, c.reshape(1, -1).expand(lr.shape[0], -1), method,
                                                       with_beta, beta), 0) for c in conds])


def cond_tag(cond: Sequence[float], k: int, with_beta: bool) -> str:
    """Metric-name suffix of a conditioning vector: ``w0.3_0.7`` (``w0.3_0.7_beta2`` with beta)."""
    from gfn.preferences import pref_tag
    c = [float(v) for v in cond]
    tag = pref_tag(c[:k])
    return f"{tag}_beta{c[k]:g}" if with_beta else tag


@torch.no_grad()
def exact_preference_metrics(env, model, conds: torch.Tensor, method: str = "weighted_sum", with_beta: bool = False,
                             beta: float = 1.0, per_pref: bool = True) -> dict:
    """``tv_exact_<pref>`` = tv(p_T(. | w), R(. | w) / Z(w)) for each conditioning vector,
    ``tv_exact_pref_mean`` / ``tv_exact_pref_max`` over them, and ``log_z_error_pref_mean`` (|log Z(w) - exact|)
    when the model learns a conditional log Z."""
    from gfn.preferences import is_multi_objective
    if not is_multi_objective(env):
        raise ValueError(f"{type(env).__name__} has no vector rewards")
    k = env.reward.n_objectives
    targets = exact_preference_targets(env, conds, method, with_beta, beta)
    device = getattr(env, "device", torch.device("cpu"))
    out, tvs = {}, []
    for c, q in zip(conds, targets):
        p = exact_terminal_distribution(env, model, cond=c.to(device).float())
        d = tv(p, q)
        tvs.append(d)
        if per_pref:
            out[f"tv_exact_{cond_tag(c, k, with_beta)}"] = d
    out["tv_exact_pref_mean"] = sum(tvs) / len(tvs)
    out["tv_exact_pref_max"] = max(tvs)
    if getattr(model.log_z, "cond_dim", 0) == conds.shape[1]:
        lz_true = exact_log_partitions(env, conds, method, with_beta, beta)
        lz = model.log_z(conds.shape[0], conds.to(device).float()).double().cpu()
        out["log_z_error_pref_mean"] = float((lz - lz_true).abs().mean())
    return out


def sample_from_target(target: torch.Tensor, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` state indices drawn from an exact target distribution ``[M]`` (e.g. to see what an
    exact sampler would reach on a sample-based metric)."""
    return torch.multinomial(target.double(), n, replacement=True, generator=generator)


def pareto_plot(samples, front=None, names: Sequence[str] = ("objective 1", "objective 2"), colors=None,
                path: Optional[str] = None, title: str = ""):
    """Scatter of sampled objective vectors (first two objectives, coloured by ``colors``, e.g. the
    preference weight of objective 1) over the true/reference Pareto front; saves a PNG at ``path``
    and returns the picture as an HxWx3 uint8 array (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    y = _points(samples, "samples").numpy()
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=100)
    c = None if colors is None else torch.as_tensor(colors).double().numpy()
    sc = ax.scatter(y[:, 0], y[:, 1], s=8, c=c, cmap="viridis", alpha=0.6, label=f"samples (n={y.shape[0]})")
    if c is not None:
        fig.colorbar(sc, ax=ax, label=f"preference weight of {names[0]}")
    if front is not None:
        f = _points(front, "front").numpy()
        f = f[np.argsort(f[:, 0])]
        ax.plot(f[:, 0], f[:, 1], "r.-", ms=5, lw=1, label=f"Pareto front ({f.shape[0]})")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path:
        fig.savefig(path)
    plt.close(fig)
    return rgb
