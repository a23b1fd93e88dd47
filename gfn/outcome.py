"""Outcome-conditioned GFlowNets (OC-GFN, Pan et al. 2024): reward-free pre-training and the marginal.

An outcome-conditioned GFlowNet learns ``P_F(. | s, y)`` for a *target outcome* ``y`` (a complete
object) with the reward ``R(x | y) = 1[x == y]``: no task reward is used, so one pre-trained model
serves every downstream reward on the same object space.

Scope: fixed-length sequences built by the ``append`` MDP (bit sequences, TFBind8).  Their state
graph is a tree, so ``P_B = 1`` and the flow of a state is the probability of its (unique) prefix
path: ``log F(s | y) = log Z(y) + sum_t log P_F(s_{t+1} | s_t, y)``.

Pre-training (:func:`pretrain_step`) samples targets uniformly, rolls the policy out and scores every
trajectory with trajectory balance against two outcomes: the outcome it reached (hindsight
relabelling: reward 1) and the outcome reached by another trajectory of the batch (the contrastive
negative: reward 0 unless the two coincide, clamped to ``log_floor``).  Trajectory balance gives every
transition the terminal signal at once, the role outcome teleportation plays for detailed balance
in the paper.

Adaptation to a new reward ``R(x)`` marginalises the outcome out of the pre-trained policy:
``P^T(a | s) = sum_y R(y) F(s | y) P_F(a | s, y) / sum_y R(y) F(s | y)``.
:func:`marginal_log_probs` estimates both sums by importance sampling over a set of outcomes
(exact when the set is the whole outcome space with ``q`` uniform).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from gfn.env import EnvError

__all__ = ["MarginalPolicy", "outcome_reward", "outcome_log_reward", "OutcomePolicy", "sample_outcomes", "rollout",
           "trajectory_log_pf", "success_log_prob", "log_flow", "marginal_log_probs", "pretrain_step"]


def outcome_reward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``R(x | y) = 1[x == y]`` for batches of complete objects ``x`` and target outcomes ``y``."""
    if x.shape != y.shape:
        raise ValueError(f"objects {tuple(x.shape)} and outcomes {tuple(y.shape)} must have the same shape")
    return (x == y).all(-1).to(torch.get_default_dtype())


def outcome_log_reward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log R(x | y)``: 0 where ``x`` reaches the outcome, ``-inf`` elsewhere."""
    return outcome_reward(x, y).log()


def _check_env(env) -> None:
    mdp = getattr(env, "mdp", None)
    if getattr(mdp, "name", None) != "append" or env.min_len != env.max_len:
        raise EnvError("outcome-conditioned GFlowNets here need a fixed-length SequenceEnv with mdp='append' "
                       f"(a tree-shaped state graph); got {env!r}")


class OutcomePolicy(nn.Module):
    """``P_F(a | s, y)`` and ``log Z(y)``: MLPs on the one-hot state and the one-hot target outcome."""

    def __init__(self, env, hidden: int = 128, n_layers: int = 2):
        super().__init__()
        _check_env(env)
        self.env = env
        d = 2 * env.feature_dim
        layers, width = [], d
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU()]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, env.n_actions)
        self.log_z = nn.Sequential(nn.Linear(env.feature_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def _check(self, states, outcomes):
        if states.shape != outcomes.shape or states.shape[-1] != self.env.max_len:
            raise ValueError(f"states {tuple(states.shape)} and outcomes {tuple(outcomes.shape)} must both be "
                             f"[N, {self.env.max_len}]")
        if (outcomes < 0).any() or (outcomes >= self.env.vocab_size).any():
            raise ValueError("outcomes must be complete sequences with tokens in [0, vocab_size)")

    def forward(self, states: torch.Tensor, outcomes: torch.Tensor) -> torch.Tensor:
        """Masked log-probabilities ``[N, n_actions]`` of the forward actions at ``states`` given ``outcomes``."""
        self._check(states, outcomes)
        return self.forward_features(states, self.env.featurize(outcomes))

    def forward_features(self, states: torch.Tensor, outcome_features: torch.Tensor) -> torch.Tensor:
        """As :meth:`forward`, with the outcome given by its (possibly soft) one-hot features ``[N, L * (V + 1)]``."""
        feats = torch.cat([self.env.featurize(states), outcome_features], 1).to(self.head.weight.dtype)
        logits = self.head(self.trunk(feats))
        logits = logits.masked_fill(~self.env.forward_mask(states), float("-inf"))
        return logits.log_softmax(-1)

    def log_partition(self, outcomes: torch.Tensor) -> torch.Tensor:
        """``log Z(y)`` per outcome (1 at the optimum of the indicator reward: log Z = 0)."""
        return self.log_z(self.env.featurize(outcomes).to(self.head.weight.dtype)).squeeze(-1)


def sample_outcomes(env, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` target outcomes drawn uniformly from the whole object space (no reward involved)."""
    return torch.randint(0, env.vocab_size, (n, env.max_len), generator=generator, device=env.device)


def rollout(env, policy: OutcomePolicy, outcomes: torch.Tensor, epsilon: float = 0.0,
            generator: Optional[torch.Generator] = None):
    """Sample one trajectory per outcome; returns (objects ``[N, L]``, states ``[L, N, L]``, actions ``[L, N]``).

    The exit action is forced after the L-th token (fixed length), so only the L appends are kept.
    ``epsilon`` mixes the policy with the uniform one for exploration (behaviour only).
    """
    return sample_sequences(env, lambda s: policy(s, outcomes), outcomes.shape[0], epsilon, generator)


def sample_sequences(env, log_probs_fn, n: int, epsilon: float = 0.0,
                     generator: Optional[torch.Generator] = None):
    """Roll out ``n`` fixed-length sequences with ``log_probs_fn(states) -> [n, A]`` log-probabilities.

    Returns (objects ``[n, L]``, states ``[L, n, L]``, actions ``[L, n]``); ``epsilon`` mixes in the
    uniform policy over allowed actions (behaviour only). Shared by :func:`rollout` and unconditional
    baselines.
    """
    s = env.initial_states(n)
    states, actions = [], []
    with torch.no_grad():
        for _ in range(env.max_len):
            p = log_probs_fn(s).exp()
            if epsilon > 0:
                m = env.forward_mask(s).to(p.dtype)
                p = (1 - epsilon) * p + epsilon * m / m.sum(1, keepdim=True)
            a = torch.multinomial(p, 1, generator=generator).squeeze(1)
            states.append(s)
            actions.append(a)
            s = env.step(s, a)
    return s, torch.stack(states), torch.stack(actions)


def trajectory_log_pf(policy: OutcomePolicy, states: torch.Tensor, actions: torch.Tensor,
                      outcomes: torch.Tensor) -> torch.Tensor:
    """``sum_t log P_F(a_t | s_t, y)`` for ``[L, N, ...]`` trajectories, in one batched policy call."""
    T, n = actions.shape
    lp = policy(states.reshape(T * n, -1), outcomes.repeat(T, 1))
    return lp.gather(1, actions.reshape(-1, 1)).view(T, n).sum(0)


def _prefix_path(env, x: torch.Tensor):
    """States ``[L, N, L]`` and append actions ``[L, N]`` of the unique path to the complete objects ``x``."""
    L = env.max_len
    pos = torch.arange(L, device=x.device)
    states = torch.stack([torch.where(pos < t, x, torch.full_like(x, -1)) for t in range(L)])
    return states, x.t().contiguous()


def success_log_prob(env, policy: OutcomePolicy, outcomes: torch.Tensor) -> torch.Tensor:
    """``log P(x = y | y)``: exact log-probability that the policy conditioned on ``y`` generates ``y``."""
    states, actions = _prefix_path(env, outcomes)
    return trajectory_log_pf(policy, states, actions, outcomes)


def log_flow(env, policy: OutcomePolicy, states: torch.Tensor, outcomes: torch.Tensor) -> torch.Tensor:
    """``log F(s | y) = log Z(y) + log P_F(prefix path to s | y)`` (tree MDP), for paired rows."""
    n, L = states.shape
    lengths = env.lengths(states)
    full = states.clamp(min=0)
    path_states, path_actions = _prefix_path(env, full)
    lp = policy(path_states.reshape(L * n, -1), outcomes.repeat(L, 1))
    step_lp = lp.gather(1, path_actions.reshape(-1, 1)).view(L, n)
    used = torch.arange(L, device=states.device).unsqueeze(1) < lengths.unsqueeze(0)
    return policy.log_partition(outcomes) + (step_lp * used).sum(0)


def marginal_log_probs(env, policy: OutcomePolicy, states: torch.Tensor, outcomes: torch.Tensor,
                       log_r: torch.Tensor, log_q: Optional[torch.Tensor] = None):
    """Outcome-marginalised policy ``log P^T(a | s)`` ``[N, A]`` and ``log sum_y R(y) F(s | y)`` ``[N]``.

    ``outcomes`` ``[K, L]`` drawn from a proposal with log-probabilities ``log_q`` ``[K]`` (None: the
    K outcomes are the whole space, counted once each): ``sum_y g(y) ~= (1/K) sum_k g(y_k) / q(y_k)``.
    All N x K pairs go through the policy in one batched call.
    """
    n, k = states.shape[0], outcomes.shape[0]
    if log_r.shape != (k,):
        raise ValueError(f"log_r must have shape ({k},), got {tuple(log_r.shape)}")
    if log_q is not None and log_q.shape != (k,):
        raise ValueError(f"log_q must have shape ({k},), got {tuple(log_q.shape)}")
    w = log_r if log_q is None else log_r - log_q - math.log(k)
    s = states.repeat_interleave(k, 0)
    y = outcomes.repeat(n, 1)
    lf = log_flow(env, policy, s, y).view(n, k)
    lpf = policy(s, y).view(n, k, -1)
    joint = w.view(1, k) + lf                                   # log R(y) F(s|y) / (K q(y))
    log_marg = torch.logsumexp(joint, 1)
    num = torch.logsumexp(joint.unsqueeze(-1) + lpf, 1)
    return num - log_marg.unsqueeze(1), log_marg


def pretrain_step(env, policy: OutcomePolicy, optimizer: torch.optim.Optimizer, batch_size: int,
                  epsilon: float = 0.05, log_floor: float = -20.0,
                  generator: Optional[torch.Generator] = None) -> dict:
    """One reward-free pre-training step (hindsight positives + contrastive negatives, TB loss).

    Returns the loss and the fraction of trajectories that reached their sampled target.
    """
    y = sample_outcomes(env, batch_size, generator)
    x, states, actions = rollout(env, policy, y, epsilon, generator)
    perm = torch.randperm(batch_size, generator=generator, device=x.device)
    negatives = x[perm]
    targets = torch.cat([x, negatives])
    log_r = outcome_log_reward(torch.cat([x, x]), targets).clamp(min=log_floor)
    lp = trajectory_log_pf(policy, states.repeat(1, 2, 1), actions.repeat(1, 2), targets)
    loss = (policy.log_partition(targets) + lp - log_r).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), "success": float(outcome_reward(x, y).mean())}


class MarginalPolicy(nn.Module):
    """Fine-tuned policy for a new reward: the pre-trained ``P_F(. | s, y)`` with the outcome amortised.

    A learned predictor ``q_w(y | s)`` (independent categoricals over the L positions) stands in for
    the reward-weighted outcome posterior, and the policy is ``sum_y q_w(y | s) P_F(a | s, y)``.
    Two amortisations of that sum (``amortisation``):

    * ``"mixture"`` (default): an exact sum over the V values of the *next* outcome token, each with
      a hard (one-hot) outcome that agrees with the prefix of ``s`` and takes the predictor's most
      likely token at the later positions: ``sum_v q_w(y_t = v | s) P_F(a | s, y^(v))``.  V policy
      calls per state; the pre-trained network only sees outcomes of the kind it was trained on, so
      a uniform predictor gives a near-uniform policy.
    * ``"mean_field"``: one policy call at the expected outcome encoding ``E_q[onehot(y)]`` (exact
      when ``q`` is one-hot; a soft outcome is off the pre-training distribution).

    The outcome-conditioned network is frozen unless ``finetune_policy``; ``log_z`` is the new task's
    log-partition.  Train it with trajectory balance on the task reward.
    """

    def __init__(self, oc_policy: OutcomePolicy, hidden: int = 256, finetune_policy: bool = False,
                 amortisation: str = "mixture"):
        super().__init__()
        if amortisation not in ("mixture", "mean_field"):
            raise ValueError(f"amortisation must be 'mixture' or 'mean_field', got {amortisation!r}")
        self.amortisation = amortisation
        self.oc = oc_policy
        self.env = oc_policy.env
        for p in self.oc.parameters():
            p.requires_grad_(finetune_policy)
        L, V = self.env.max_len, self.env.vocab_size
        self.predictor = nn.Sequential(nn.Linear(self.env.feature_dim, hidden), nn.LeakyReLU(),
                                       nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, L * V))
        nn.init.zeros_(self.predictor[-1].weight)      # start from the uniform outcome
        nn.init.zeros_(self.predictor[-1].bias)
        self.log_z = nn.Parameter(torch.zeros(()))

    def outcome_probs(self, states: torch.Tensor) -> torch.Tensor:
        """``q_w(y_l = v | s)`` as ``[N, L, V]``."""
        L, V = self.env.max_len, self.env.vocab_size
        return self.predictor(self.env.featurize(states).to(self.log_z.dtype)).view(-1, L, V).softmax(-1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Masked log-probabilities ``[N, n_actions]`` of the fine-tuned policy."""
        q = self.outcome_probs(states)
        if self.amortisation == "mean_field":
            feats = torch.cat([q, q.new_zeros(q.shape[:2] + (1,))], -1).flatten(1)
            return self.oc.forward_features(states, feats)
        return self.mixture_log_probs(states, q)

    def mixture_log_probs(self, states: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``log sum_v q(y_t = v | s) P_F(a | s, y^(v))`` ``[N, A]``; see the class docstring."""
        n, L = states.shape
        V = self.env.vocab_size
        t = self.env.lengths(states).clamp(max=L - 1)
        rows = torch.arange(n, device=states.device)
        base = torch.where(states >= 0, states, q.argmax(-1))          # prefix of s, then q's mode
        ys = base.repeat_interleave(V, 0)
        ys[torch.arange(n * V, device=states.device), t.repeat_interleave(V)] = \
            torch.arange(V, device=states.device).repeat(n)
        lp = self.oc(states.repeat_interleave(V, 0), ys).view(n, V, -1).clamp_min(-1e4)   # finite: no NaN grads
        log_w = q[rows, t].clamp_min(1e-30).log()                       # [N, V]
        out = torch.logsumexp(log_w.unsqueeze(-1) + lp, 1)
        return out.masked_fill(~self.env.forward_mask(states), float("-inf"))
