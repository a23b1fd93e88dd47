"""Stochastic environments: a sticky-action wrapper that makes any discrete environment random.

``StickyActions(env, alpha)`` follows Pan et al. 2023 ("Stochastic Generative Flow Networks"):
with probability ``alpha`` the move the environment makes is not the action the policy chose
but a uniformly random non-exit move; exit is never changed.  Two rules say where that happens:

* ``rule="pan2023"`` (default, the authors' hypergrid code): only at states where *every*
  non-exit move is allowed (on the hypergrid: not on an upper edge); elsewhere the chosen action
  is taken.  The random move may equal the chosen one, so at such a state
  ``P(move m | a) = (1 - alpha) [m = a] + alpha / (n_actions - 1)``.
* ``rule="allowed"`` (a documented alternative for environments with many forbidden moves): at
  every state, uniform over the moves allowed there,
  ``P(move m | a) = (1 - alpha) [m = a] + alpha [m allowed] / n_allowed``.

Atari-style stickiness (repeating the *previous* action) would need the previous action in the
state; it is not provided.  The wrapper keeps the base environment's states, masks, reward and
enumeration, so exact metrics work (:mod:`gfn.metrics.stochastic`).
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.env import DiscreteEnv, StochasticDiscreteEnv
from gfn.states import States, batch_len

RULES = ("pan2023", "allowed")


class StickyActions(StochasticDiscreteEnv):
    """``env`` whose non-exit actions are replaced by a random move with probability ``alpha``."""

    def __init__(self, env: DiscreteEnv, alpha: float = 0.25, rule: str = "pan2023"):
        if not isinstance(env, DiscreteEnv):
            raise TypeError(f"StickyActions wraps a DiscreteEnv, got {type(env).__name__}")
        if getattr(env, "is_stochastic", False):
            raise ValueError(f"StickyActions: {type(env).__name__} is already stochastic")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"StickyActions: alpha must be in [0, 1], got {alpha}")
        if rule not in RULES:
            raise ValueError(f"StickyActions: unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        super().__init__(n_actions=env.n_actions, n_backward_actions=env.n_backward_actions,
                         reward=env.reward, device=env.device)
        self.base, self.alpha, self.rule = env, float(alpha), rule
        self.state_shape = env.state_shape
        self.state_dtype = env.state_dtype
        self.provides_intermediate_rewards = env.provides_intermediate_rewards

    # the state graph, reward and enumeration are the base environment's ----------
    def initial_states(self, n: int) -> States:
        """The base environment's initial states."""
        return self.base.initial_states(n)

    def step(self, states: States, actions: torch.Tensor) -> States:
        """Make the given *moves* (deterministic; :meth:`sample_moves` draws them)."""
        return self.base.step(states, actions)

    def backward_step(self, states: States, actions: torch.Tensor) -> States:
        """The base environment's backward step."""
        return self.base.backward_step(states, actions)

    def forward_mask(self, states: States) -> torch.Tensor:
        """Allowed actions (= allowed moves) of the base environment."""
        return self.base.forward_mask(states)

    def backward_mask(self, states: States) -> torch.Tensor:
        """The base environment's backward mask."""
        return self.base.backward_mask(states)

    def log_reward(self, states: States) -> torch.Tensor:
        """The base environment's log R."""
        return self.base.log_reward(states)

    def featurize(self, states: States) -> torch.Tensor:
        """The base environment's features."""
        return self.base.featurize(states)

    @property
    def feature_dim(self) -> int:
        return self.base.feature_dim

    def backward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """Backward action at the child of a *move*."""
        return self.base.backward_action(states, actions)

    def forward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """Forward move at the parent of a backward action."""
        return self.base.forward_action(states, actions)

    def transition_log_prob(self, dist, states: States, actions: torch.Tensor, backward: bool = False):
        """The base environment's action-to-transition scoring."""
        return self.base.transition_log_prob(dist, states, actions, backward)

    @property
    def transitions_are_actions(self) -> bool:
        return self.base.transitions_are_actions

    def enumerate_states(self) -> Optional[States]:
        """The base environment's states."""
        return self.base.enumerate_states()

    def state_index(self, states: States) -> torch.Tensor:
        """The base environment's state index."""
        return self.base.state_index(states)

    @property
    def is_enumerable(self) -> bool:
        return self.base.is_enumerable

    def is_initial(self, states: States) -> torch.Tensor:
        """The base environment's initial-state test."""
        return self.base.is_initial(states)

    def __getattr__(self, name):
        # env-specific helpers (mode_mask, n_states, height, ...) come from the base environment
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    # the stochastic part -----------------------------------------------------------
    def _sticky_rows(self, moves_allowed: torch.Tensor) -> torch.Tensor:
        """True at states where a chosen action may be replaced (depends on the rule)."""
        if self.rule == "pan2023":
            return moves_allowed.all(-1)
        return moves_allowed.any(-1)

    def sample_moves(self, states: States, actions: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """With probability ``alpha`` (where the rule allows) a uniformly random move replaces the action."""
        allowed = self.base.forward_mask(states)[:, :-1]
        n = batch_len(states)
        u = torch.rand(n, generator=generator, device=allowed.device)
        stick = (u < self.alpha) & self._sticky_rows(allowed) & (actions != self.exit_action)
        weights = (allowed | ~allowed.any(-1, keepdim=True)).float()  # rows with no move: never used
        random_moves = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        return torch.where(stick, random_moves, actions)

    def move_log_probs(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """Exact ``log P(move | state, action)``, ``[N, n_actions - 1]``; rows of exit actions are -inf."""
        allowed = self.base.forward_mask(states)[:, :-1]
        n_allowed = allowed.sum(-1, keepdim=True).clamp(min=1).double()
        sticky = self._sticky_rows(allowed).unsqueeze(1).double()
        is_exit = actions == self.exit_action
        chosen = torch.zeros(allowed.shape, dtype=torch.float64, device=allowed.device)
        chosen.scatter_(1, actions.clamp(max=self.n_actions - 2).unsqueeze(1), 1.0)
        p = (1 - self.alpha * sticky) * chosen + self.alpha * sticky * allowed.double() / n_allowed
        p = p * allowed.double()
        p = p.masked_fill(is_exit.unsqueeze(1), 0.0)
        return p.log()

    def __repr__(self) -> str:
        return f"StickyActions({type(self.base).__name__}, alpha={self.alpha}, rule={self.rule!r})"
