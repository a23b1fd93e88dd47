"""Estimated metrics: sampling-based estimates for environments too large to enumerate.

All logs are natural logs.  For a complete trajectory ``tau = (s_0 -> ... -> x -> exit)`` write
``log w(tau) = log R(x) + sum log P_B(tau | x) - sum log P_F(tau)`` (the log importance weight of
the forward policy against the target path measure ``R(x) P_B(tau | x) / Z``).

* :func:`log_prob_estimate`: ``log p_T(x)`` of the learned sampler by importance sampling over
  ``k`` backward trajectories from each ``x`` (``logmeanexp_k [log P_F(tau_k) - log P_B(tau_k | x)]``);
  unbiased in ``p_T(x)``, a lower bound in expectation in log space.  A density for continuous
  environments (with respect to the reference measure the environment documents).
* :func:`log_z_estimates`: from ``n`` forward samples, ``log_z_elbo`` (mean of ``log w``),
  ``log_z_iw`` (``logmeanexp`` of ``log w``) and ``ess`` (effective sample size as a fraction of n).
* :func:`log_z_eubo`: from backward trajectories of exact target samples, the upper bound
  ``mean log w``.
* :func:`pearson`, :func:`spearman_ties`: correlations (Spearman with average ranks for ties).
* :class:`EstimatedMetrics`: a ``metrics_fn(trainer)`` for :func:`gfn.runner.run` that writes all
  of the above (and ``delta_log_z_*`` when the true log Z is known) on a fixed test set.
* :func:`exact_target_sampler`: draws exact target samples of an enumerable environment.

Helpers for other estimators: :func:`forward_log_weights` (log w of n on-policy samples),
:func:`backward_log_weights` (log w of one backward trajectory from each given object),
:func:`log_z_from_log_weights`, :func:`trajectory_log_ratios` (per-trajectory log P_F - log P_B of a
packed batch).  All take ``(env, model, ..., cond=None)``; ``cond`` is one vector or one per object.

Everything is batched: one backward sampling call over ``n * k`` trajectories (in chunks of
``chunk`` trajectories) and one scoring pass per chunk; no Python loop over objects.  For integer
tensor states without conditioning (grids, sequences, spins) the policy networks run once per
*distinct* state per call, cached across sampling steps, chunks and scoring (exact: the same
numbers as scoring every row), which is what makes ``k = 64`` cheap on grids.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from gfn.distributions import MaskedCategorical
from gfn.env import DiscreteEnv, Env
from gfn.ops import segment_sum
from gfn.sampler import Sampler
from gfn.states import States, batch_cat, batch_index, batch_len
from gfn.trajectories import TrajectoryBatch

#: trajectories sampled and scored at once by :func:`log_prob_estimate` (bounds memory)
DEFAULT_CHUNK = 65536

TargetSampler = Callable[[int, Optional[torch.Generator]], States]


# ---------------------------------------------------------------------------- scoring
def _categorical(log_probs: torch.Tensor, mask: torch.Tensor) -> MaskedCategorical:
    """A :class:`MaskedCategorical` from rows that are already normalised and -inf where masked."""
    dist = MaskedCategorical.__new__(MaskedCategorical)
    dist.logits, dist.mask, dist._log_probs = log_probs, mask, log_probs
    return dist


class _StateCache:
    """P_F and P_B rows of the distinct integer tensor states seen so far (one network pass per
    new state: the trunk encoding feeds both policies).

    States are identified by a mixed-radix int64 key of their entries (exact: no hashing); the
    radix grows, and the index is rebuilt, when a state outside the current range arrives.  The
    index is a direct lookup table when the key space is small (grids, small lattices), else a
    sorted key array searched by bisection.  Disables itself (the caller then asks the model
    directly) when keys would overflow, the cache would exceed ``max_states`` rows, or a policy
    returns something other than a :class:`MaskedCategorical`."""

    #: largest key space indexed by a direct table (int64 entries: 64 MiB)
    TABLE_MAX = 1 << 23

    def __init__(self, model, max_states: int):
        self.model, self.max_states = model, max_states
        self.lo = self.span = self.radix = None
        self.offset, self.space = 0, 0
        self.keys = self.states = None  # rows in insertion order
        self.rows: dict = {}  # "pf" / "pb" -> (log_probs, mask)
        self.table = self.sorted_keys = self.order = None
        self.disabled = False

    def _key(self, flat: torch.Tensor) -> torch.Tensor:
        return flat @ self.radix - self.offset

    def _reindex(self) -> None:
        """Rebuild the lookup structure from ``self.keys``."""
        if self.space <= self.TABLE_MAX:
            self.sorted_keys = self.order = None
            with torch.inference_mode(False):  # a normal tensor: updated in place in and out of inference mode
                self.table = torch.full((self.space,), -1, dtype=torch.long, device=self.radix.device)
            if self.keys is not None:
                self.table[self.keys] = torch.arange(self.keys.numel(), device=self.keys.device)
        else:
            self.table = None
            if self.keys is not None:
                self.sorted_keys, self.order = torch.sort(self.keys)

    def _widen(self, flat: torch.Tensor) -> bool:
        """Make the key range cover ``flat``; False when 62 bits cannot hold it."""
        # -1 and 1 are always in range (padding, unset entries), so most MDPs never widen twice
        lo, hi = torch.aminmax(flat, dim=0)
        lo, hi = lo.clamp(max=-1), hi.clamp(min=1)
        if self.lo is not None:
            if bool((lo >= self.lo).all() and (hi < self.lo + self.span).all()):
                return True
            lo, hi = torch.minimum(lo, self.lo), torch.maximum(hi, self.lo + self.span - 1)
        span = hi - lo + 1
        if float(torch.log2(span.double()).sum()) >= 62:
            return False
        radix = torch.ones_like(span)
        if span.numel() > 1:
            radix[:-1] = torch.flip(torch.cumprod(torch.flip(span[1:], [0]), 0), [0])
        self.lo, self.span, self.radix = lo, span, radix
        self.offset, self.space = int((lo * radix).sum()), int(torch.prod(span.double()))
        if self.states is not None:  # the cached rows get keys in the new radix
            self.keys = self._key(self.states.reshape(self.states.shape[0], -1).long())
        self._reindex()
        return True

    def _lookup(self, key: torch.Tensor) -> torch.Tensor:
        """Cache row of each key, -1 where absent."""
        if self.table is not None:
            return self.table[key]
        if self.sorted_keys is None:
            return torch.full_like(key, -1)
        pos = torch.searchsorted(self.sorted_keys, key).clamp_(max=self.sorted_keys.numel() - 1)
        return torch.where(self.sorted_keys[pos] == key, self.order[pos], -1)

    def _first_rows(self, key: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """One row index per distinct key among the rows flagged ``missing``."""
        miss_rows = missing.nonzero().squeeze(1)
        miss_keys = key[miss_rows]
        if self.table is not None:  # first occurrence of each new key, without sorting
            order = torch.arange(miss_rows.numel(), device=key.device)
            self.table.index_fill_(0, miss_keys, miss_rows.numel())
            self.table.scatter_reduce_(0, miss_keys, order, reduce="amin")
            first = miss_rows[self.table[miss_keys] == order]
            self.table[key[first]] = -1
            return first
        uniq, inv = torch.unique(miss_keys, return_inverse=True)
        first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long, device=key.device)
        return first.scatter_reduce_(0, inv, miss_rows, reduce="amin")

    def _add(self, key: torch.Tensor, states: torch.Tensor, first: torch.Tensor) -> bool:
        """Evaluate both policies at ``states[first]`` and append them; False if not cacheable."""
        n_cached = 0 if self.keys is None else self.keys.numel()
        if n_cached + first.numel() > self.max_states:
            return False
        new_states = states[first]
        if callable(getattr(self.model, "encode", None)):  # a GFlowNet: one trunk pass feeds both policies
            h = self.model.encode(new_states, None)
            dists = {"pf": self.model.pf_dist(new_states, None, h=h), "pb": self.model.pb_dist(new_states, None, h=h)}
        else:
            dists = {"pf": self.model.pf_dist(new_states, None), "pb": self.model.pb_dist(new_states, None)}
        if any(type(d) is not MaskedCategorical for d in dists.values()):
            return False
        new_keys = key[first]
        if self.keys is None:
            self.keys, self.states = new_keys, new_states
            self.rows = {name: (d.log_probs, d.mask) for name, d in dists.items()}
        else:
            self.keys = torch.cat([self.keys, new_keys])
            self.states = torch.cat([self.states, new_states])
            self.rows = {name: (torch.cat([self.rows[name][0], d.log_probs]), torch.cat([self.rows[name][1], d.mask]))
                         for name, d in dists.items()}
        if self.table is not None:
            self.table[new_keys] = torch.arange(n_cached, n_cached + new_keys.numel(), device=key.device)
        else:
            self._reindex()
        return True

    def dist(self, which: str, states: torch.Tensor) -> Optional[MaskedCategorical]:
        """``which`` ("pf" or "pb") at ``states`` from the cache (filled as needed); None when the
        cache cannot serve them."""
        if self.disabled or states.shape[0] == 0:
            return None
        flat = states.reshape(states.shape[0], -1).long()
        if not self._widen(flat):
            self.disabled = True
            return None
        key = self._key(flat)
        row = self._lookup(key)
        missing = row < 0
        if bool(missing.any()):
            if not self._add(key, states, self._first_rows(key, missing)):
                self.disabled = True
                return None
            row = self._lookup(key)
        log_probs, mask = self.rows[which]
        # rows of s_0 under P_B are all -inf (no parent) and never used
        return _categorical(log_probs[row], mask[row])


class _Distinct:
    """Model proxy for one metric call: P_F / P_B are evaluated once per *distinct* integer tensor
    state (cached across sampling steps and scoring); anything else goes straight to the model.
    Only for a fixed model (no gradients) and no conditioning."""

    def __init__(self, model, max_states: int = 1 << 21):
        self.model = model
        self.cache = _StateCache(model, max_states)

    def _dist(self, which: str, states: States, cond: Optional[torch.Tensor]):
        dist = self.cache.dist(which, states) if _dedup_applies(states, cond) else None
        if dist is None:
            return getattr(self.model, f"{which}_dist")(states, cond)
        return dist

    def pf_dist(self, states: States, cond: Optional[torch.Tensor] = None):
        """Forward action distribution at ``states``."""
        return self._dist("pf", states, cond)

    def pb_dist(self, states: States, cond: Optional[torch.Tensor] = None):
        """Backward action distribution at ``states``."""
        return self._dist("pb", states, cond)


def _dedup_applies(states: States, cond: Optional[torch.Tensor]) -> bool:
    return cond is None and torch.is_tensor(states) and not states.is_floating_point() and not states.is_complex()


@torch.no_grad()
def trajectory_log_ratios(model, batch: TrajectoryBatch, _proxy: Optional[_Distinct] = None) -> torch.Tensor:
    """``sum log P_F(tau) - sum log P_B(tau | x)`` of every trajectory of a packed batch (float32 [B]).

    Integer tensor states without conditioning: each distinct state's distributions are computed
    once; otherwise :meth:`gfn.estimators.GFlowNet.evaluate` scores every row in one call."""
    env = model.env
    if _dedup_applies(batch.states, batch.cond):
        proxy = _proxy or _Distinct(model)
        log_pf = env.transition_log_prob(proxy.pf_dist(batch.states), batch.states, batch.actions, backward=False)
        rows = (~batch.is_first).nonzero().squeeze(1)
        sub = batch_index(batch.states, rows)
        lp = env.transition_log_prob(proxy.pb_dist(sub), sub, batch.bwd_actions[rows], backward=True)
        log_pb = torch.zeros_like(log_pf).index_copy(0, rows, lp.to(log_pf.dtype))
    else:
        scores = model.evaluate(batch.with_(log_pf=None), pf=True, pb=True)
        log_pf, log_pb = scores.log_pf, scores.log_pb
    return segment_sum(log_pf - log_pb, batch.ptr)


def _expand_cond(cond: Optional[torch.Tensor], n: int, what: str) -> Optional[torch.Tensor]:
    """Conditioning as [n, c]: a vector [c] (or [1, c]) is shared by all n objects."""
    if cond is None:
        return None
    if not torch.is_tensor(cond):
        raise TypeError(f"{what}: cond must be a tensor, got {type(cond).__name__}")
    if cond.dim() == 1:
        cond = cond.unsqueeze(0)
    if cond.dim() != 2 or cond.shape[0] not in (1, n):
        raise ValueError(f"{what}: cond must have shape [c], [1, c] or [{n}, c], got {tuple(cond.shape)}")
    return cond.expand(n, -1) if cond.shape[0] == 1 else cond


def _check_positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _sampler(env: Env, model) -> tuple[Sampler, _Distinct]:
    """A sampler whose policy calls go through one :class:`_Distinct` proxy (returned too, so that
    scoring reuses its cache)."""
    proxy = _Distinct(model)
    sampler = Sampler(env, model)
    sampler.model = proxy  # the sampler only calls pf_dist / pb_dist
    return sampler, proxy


# ---------------------------------------------------------------------------- log p(x)
@torch.no_grad()
def log_prob_estimate(env: Env, model, x: States, k: int = 64, cond: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Importance-sampled ``log p_T(x)`` of the model's forward policy, float64 ``[n]``.

    ``log p_T(x) ~= logmeanexp_{j=1..k} [log P_F(tau_j) - log P_B(tau_j | x)]`` with ``tau_j ~ P_B(. | x)``,
    the ``n * k`` backward trajectories sampled and scored in batches of at most ``chunk``
    trajectories (whole objects per batch).  ``x``: terminal states (any state type);
    ``cond``: conditioning, ``[n, c]`` or one vector ``[c]`` for all objects.  Exact (up to float
    rounding) when P_B is the model's true backward flow or the state graph is a tree.  For
    continuous environments the result is a log-density.
    """
    k = _check_positive(k, "k")
    n = batch_len(x)
    cond = _expand_cond(cond, n, "log_prob_estimate")
    if n == 0:
        return torch.empty(0, dtype=torch.float64, device=env.device)
    per = max(1, _check_positive(chunk, "chunk") // k)  # objects per batch
    sampler, proxy = _sampler(env, model)
    out = []
    for start in range(0, n, per):
        m = min(per, n - start)
        rep = torch.arange(start, start + m, device=env.device).repeat_interleave(k)
        xs = batch_index(x, rep)
        c = None if cond is None else cond[rep]
        batch = sampler.sample_backward(xs, cond=c, generator=generator,
                                        log_rewards=torch.zeros(m * k, device=env.device))
        ratio = trajectory_log_ratios(model, batch, proxy).double().reshape(m, k)
        out.append(torch.logsumexp(ratio, 1) - math.log(k))
    return torch.cat(out)


# ---------------------------------------------------------------------------- log Z
def _log_weights(model, batch: TrajectoryBatch, log_rewards: torch.Tensor, proxy=None) -> torch.Tensor:
    return log_rewards.double() - trajectory_log_ratios(model, batch, proxy).double()


def _reward(env: Env, states: States, cond, log_reward_fn) -> torch.Tensor:
    if log_reward_fn is None:
        return env.checked_log_reward(states)
    return log_reward_fn(states, cond)


@torch.no_grad()
def forward_log_weights(env: Env, model, n: int, cond: Optional[torch.Tensor] = None,
                        log_reward_fn: Optional[Callable] = None, generator: Optional[torch.Generator] = None,
                        chunk: int = 16384) -> tuple[States, torch.Tensor, torch.Tensor]:
    """``n`` on-policy samples: ``(x, log R(x), log w)`` with ``log w = log R + log P_B - log P_F`` (float64).

    ``log_reward_fn(states, cond)``: the log-reward the (conditional) model targets, e.g. a
    tempered one; default ``env.log_reward``."""
    n = _check_positive(n, "n")
    cond = _expand_cond(cond, n, "forward_log_weights")
    sampler, proxy = _sampler(env, model)
    xs, lrs, lws = [], [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = None if cond is None else cond[start:start + m]
        batch = sampler.sample(m, cond=c, generator=generator)
        lr = (batch.log_rewards if log_reward_fn is None else log_reward_fn(batch.terminal_states, c)).double()
        xs.append(batch.terminal_states)
        lrs.append(lr)
        lws.append(_log_weights(model, batch, lr, proxy))
    return batch_cat(xs), torch.cat(lrs), torch.cat(lws)


def _logmeanexp(x: torch.Tensor) -> float:
    return float(torch.logsumexp(x.double(), 0)) - math.log(x.numel())


def log_z_from_log_weights(log_w: torch.Tensor) -> dict:
    """``log_z_elbo`` (mean), ``log_z_iw`` (logmeanexp) and ``ess`` ((sum w)^2 / sum w^2 / n) of
    forward log-weights, with standard errors ``log_z_elbo_se`` (std(log w) / sqrt(n)) and
    ``log_z_iw_se`` (delta method: sqrt((1 / ess - 1) / n)); -inf weights (invalid objects) count
    as weight 0."""
    if log_w.numel() == 0:
        raise ValueError("log_z_from_log_weights needs at least one log-weight")
    if bool(torch.isnan(log_w).any()):
        raise ValueError("log-weights contain NaN (check the model's log-probabilities and the rewards)")
    lw = log_w.double()
    n = lw.numel()
    iw = _logmeanexp(lw)
    if math.isinf(iw):
        ess = 0.0
    else:
        ess = math.exp(2 * float(torch.logsumexp(lw, 0)) - float(torch.logsumexp(2 * lw, 0))) / n
    elbo_se = float(lw.std() / math.sqrt(n)) if n > 1 and bool(torch.isfinite(lw).all()) else float("inf")
    iw_se = math.sqrt(max(1.0 / ess - 1.0, 0.0) / n) if ess > 0 else float("inf")
    return {"log_z_elbo": float(lw.mean()), "log_z_iw": iw, "ess": ess, "log_z_elbo_se": elbo_se,
            "log_z_iw_se": iw_se}


def log_z_estimates(env: Env, model, n: int = 10_000, cond: Optional[torch.Tensor] = None,
                    log_reward_fn: Optional[Callable] = None,
                    generator: Optional[torch.Generator] = None) -> dict:
    """``log_z_elbo <= log Z`` (in expectation), ``log_z_iw`` and ``ess`` from ``n`` forward
    samples of the model (see :func:`log_z_from_log_weights`), plus ``log_z_n = n``."""
    _, _, lw = forward_log_weights(env, model, n, cond, log_reward_fn, generator)
    out = log_z_from_log_weights(lw)
    out["log_z_n"] = n
    return out


@torch.no_grad()
def backward_log_weights(env: Env, model, x: States, cond: Optional[torch.Tensor] = None,
                         log_reward_fn: Optional[Callable] = None, generator: Optional[torch.Generator] = None,
                         chunk: int = 16384) -> torch.Tensor:
    """``log w = log R(x) + log P_B(tau | x) - log P_F(tau)`` (float64 [n]) of one backward
    trajectory ``tau ~ P_B(. | x)`` from each of the objects ``x``."""
    n = batch_len(x)
    cond = _expand_cond(cond, n, "backward_log_weights")
    sampler, proxy = _sampler(env, model)
    out = []
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=env.device)
        xs = batch_index(x, idx)
        c = None if cond is None else cond[idx]
        lr = _reward(env, xs, c, log_reward_fn)
        batch = sampler.sample_backward(xs, cond=c, generator=generator, log_rewards=lr.float())
        out.append(_log_weights(model, batch, lr, proxy))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=env.device)


def log_z_eubo(env: Env, model, x: States, cond: Optional[torch.Tensor] = None,
               log_reward_fn: Optional[Callable] = None, generator: Optional[torch.Generator] = None) -> float:
    """Evidence upper bound ``mean_x [log R(x) + log P_B(tau | x) - log P_F(tau)]``, ``tau ~ P_B(. | x)``,
    over exact target samples ``x`` (>= log Z in expectation: the gap is KL(target || model) on paths)."""
    if batch_len(x) == 0:
        raise ValueError("log_z_eubo needs at least one target sample")
    return float(backward_log_weights(env, model, x, cond, log_reward_fn, generator).mean())


# ---------------------------------------------------------------------------- correlation
def _finite_pair(x: torch.Tensor, y: torch.Tensor, what: str):
    x, y = x.double().flatten(), y.double().flatten()
    if x.shape != y.shape:
        raise ValueError(f"{what}: x and y differ in length ({x.numel()} vs {y.numel()})")
    keep = torch.isfinite(x) & torch.isfinite(y)
    return x[keep], y[keep]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of the finite pairs; NaN when fewer than 2 pairs or a constant input."""
    x, y = _finite_pair(x, y, "pearson")
    if x.numel() < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else float("nan")


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of ``x`` with tied values given their average rank (float64)."""
    x = x.double().flatten()
    uniq, inv = torch.unique(x, return_inverse=True)
    counts = torch.bincount(inv, minlength=uniq.numel()).double()
    start = torch.cumsum(counts, 0) - counts  # rank of the first member of each tie group
    return (start + (counts - 1) / 2)[inv]


def spearman_ties(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation with average ranks for ties (rewards often tie), over finite pairs."""
    x, y = _finite_pair(x, y, "spearman_ties")
    if x.numel() < 2:
        return float("nan")
    return pearson(average_ranks(x), average_ranks(y))


# ---------------------------------------------------------------------------- target samples
def exact_target_sampler(env: Env, max_states: int = 2 ** 22) -> Optional[TargetSampler]:
    """``sample(n, generator) -> states`` drawing exact target samples ``x ~ R(x) / Z`` by
    enumeration (``env.enumerate_terminal_states()``, else the terminal states of
    ``env.enumerate_states()``), or None when the environment cannot be enumerated.  The
    returned function carries the exact ``log Z`` as ``sample.log_z``."""
    states = None
    try:
        if callable(getattr(env, "enumerate_terminal_states", None)):
            states = env.enumerate_terminal_states()
        elif isinstance(env, DiscreteEnv) and env.is_enumerable:
            n_states = getattr(env, "n_states", None)
            if n_states is None or int(n_states) <= max_states:
                states = env.enumerate_states()
                states = batch_index(states, env.forward_mask(states)[:, env.exit_action].nonzero().squeeze(1))
    except (ValueError, NotImplementedError, RuntimeError):  # EnvError is a ValueError: too large
        return None
    if states is None or batch_len(states) > max_states:
        return None
    log_r = env.checked_log_reward(states).double()
    probs = torch.softmax(log_r, 0).cpu()

    def sample(n: int, generator: Optional[torch.Generator] = None) -> States:
        idx = torch.multinomial(probs, n, replacement=True, generator=generator).to(env.device)
        return batch_index(states, idx)

    sample.log_z = float(torch.logsumexp(log_r, 0))  # exact log Z of the enumerated target
    return sample


# ---------------------------------------------------------------------------- metrics function
def _top_k_mean(x: States, log_r: torch.Tensor, k: int) -> float:
    """Mean log R of the ``k`` best distinct objects (distinct by value for tensor states)."""
    lr = log_r.double()
    if torch.is_tensor(x):
        flat = x.reshape(x.shape[0], -1)
        _, inv = torch.unique(flat, dim=0, return_inverse=True)
        best = torch.full((int(inv.max()) + 1,), float("-inf"), dtype=torch.float64, device=lr.device)
        lr = best.scatter_reduce(0, inv, lr, reduce="amax")
    return float(torch.topk(lr, min(k, lr.numel())).values.mean())


class EstimatedMetrics:
    """``metrics_fn(trainer) -> dict`` for :func:`gfn.runner.run`: sampling-based metrics of any
    environment (see docs/metrics.md for the formulas).

    Each call draws ``n`` forward samples (``log_z_elbo``, ``log_z_iw``, ``ess``, ``samples_mean_reward``,
    ``samples_mean_log_reward``, ``samples_top{top_k}_log_reward``), ``n_eubo`` exact target samples when
    a ``target_sampler`` exists (``log_z_eubo``), ``delta_log_z_*`` when ``log_z_true`` is known, and
    the Pearson / Spearman correlation of :func:`log_prob_estimate` (``k`` backward trajectories)
    with log R on a test set of ``n_test`` objects fixed for the run: exact target samples (seeded
    by ``seed``) where the environment has a sampler, else the first evaluation's forward samples.

    ``target_sampler="auto"`` uses :func:`exact_target_sampler` (enumerable envs; it also supplies
    ``log_z_true``); pass a callable ``(n, generator) -> states`` or None.  ``cond``: one
    conditioning vector for conditional models; ``log_reward_fn(states, cond)`` the log-reward
    they target (default ``env.log_reward``).  Compose with an example's own metrics:
    ``m = own(trainer); m.update(est(trainer))``.
    """

    def __init__(self, env: Env, n: int = 1000, k: int = 16, n_test: int = 200, top_k: int = 100,
                 target_sampler="auto", log_z_true: Optional[float] = None, n_eubo: Optional[int] = None,
                 cond: Optional[torch.Tensor] = None, log_reward_fn: Optional[Callable] = None, seed: int = 0):
        self.env = env
        self.n, self.k = _check_positive(n, "n"), _check_positive(k, "k")
        self.n_test, self.top_k = _check_positive(n_test, "n_test"), _check_positive(top_k, "top_k")
        self.n_eubo = _check_positive(n_eubo if n_eubo is not None else n, "n_eubo")
        if target_sampler == "auto":
            target_sampler = exact_target_sampler(env)
        if target_sampler is not None and not callable(target_sampler):
            raise TypeError(f"target_sampler must be 'auto', a callable (n, generator) -> states or None, "
                            f"got {type(target_sampler).__name__}")
        self.target_sampler = target_sampler
        if log_z_true is None and target_sampler is not None:
            log_z_true = getattr(target_sampler, "log_z", None)
        self.log_z_true = None if log_z_true is None else float(log_z_true)
        self.cond, self.log_reward_fn, self.seed = cond, log_reward_fn, seed
        self.x_test: Optional[States] = None
        self.log_r_test: Optional[torch.Tensor] = None
        if target_sampler is not None:
            self._set_test(target_sampler(self.n_test, torch.Generator().manual_seed(seed)))

    @property
    def hook(self) -> "_TestSetHook":
        """A trainer hook (``run(..., hooks=[est.hook])``) that checkpoints the test set, so that a
        resumed run keeps the one drawn at its first evaluation (tensor states; other state types
        draw a new one after a resume).  Not needed where a target sampler fixes the test set."""
        return _TestSetHook(self)

    def _set_test(self, x: States) -> None:
        c = _expand_cond(self.cond, batch_len(x), "EstimatedMetrics")
        with torch.no_grad():
            self.x_test = x
            self.log_r_test = _reward(self.env, x, c, self.log_reward_fn).double()

    def __call__(self, trainer) -> dict:
        """The metrics of ``trainer.model`` (a dict of floats and ints)."""
        return self.evaluate(trainer.model)

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        """The metrics of ``model`` (what :meth:`__call__` returns)."""
        env, cond = self.env, self.cond
        x, log_r, log_w = forward_log_weights(env, model, self.n, cond, self.log_reward_fn)
        m = log_z_from_log_weights(log_w)
        finite = torch.isfinite(log_r)
        m["samples_mean_log_reward"] = float(log_r[finite].mean()) if bool(finite.any()) else float("-inf")
        m["samples_mean_reward"] = float(log_r.exp().mean())
        m[f"samples_top{self.top_k}_log_reward"] = _top_k_mean(x, log_r, self.top_k)
        if self.target_sampler is not None:
            m["log_z_eubo"] = log_z_eubo(env, model, self.target_sampler(self.n_eubo, None), cond, self.log_reward_fn)
        if self.log_z_true is not None:
            m["log_z_true"] = self.log_z_true
            for name in ("elbo", "iw", "eubo"):
                if f"log_z_{name}" in m:
                    m[f"delta_log_z_{name}"] = self.log_z_true - m[f"log_z_{name}"]
        if self.x_test is None:  # no sampler: the first evaluation's samples are the test set
            self._set_test(batch_index(x, torch.arange(min(self.n_test, self.n), device=env.device)))
        log_p = log_prob_estimate(env, model, self.x_test, self.k, cond)
        m["pearson_log_p_log_r"] = pearson(log_p, self.log_r_test)
        m["spearman_log_p_log_r"] = spearman_ties(log_p, self.log_r_test)
        m.update(estimate_n=self.n, estimate_k=self.k, estimate_n_test=batch_len(self.x_test))
        if self.target_sampler is not None:
            m["estimate_n_eubo"] = self.n_eubo
        return m


class _TestSetHook:
    """No-op trainer hook whose state is the test set of an :class:`EstimatedMetrics`."""

    def __init__(self, owner: EstimatedMetrics):
        self.owner = owner

    def __call__(self, trainer, iteration, info) -> None:
        """Nothing to do during training."""

    def state_dict(self) -> dict:
        """The test set when it is a tensor (None before the first evaluation)."""
        x = self.owner.x_test
        return {"x_test": x.detach().cpu() if torch.is_tensor(x) else None}

    def load_state_dict(self, d: dict) -> None:
        """Restore the test set (and recompute its log-rewards)."""
        x = d.get("x_test")
        if x is not None:
            self.owner._set_test(x.to(self.owner.env.device))
