"""The environment contract: batched, stateless dynamics plus a separate reward.

A subclass of :class:`DiscreteEnv` implements six methods (``initial_states``, ``step``,
``backward_step``, ``forward_mask``, ``backward_mask`` and ``log_reward`` — the last one is
usually inherited and delegates to a :class:`Reward` object).  Everything else (validation,
exit handling, exact enumeration hooks) has defaults.  ``gfn.check_env`` verifies the contract.

Conventions
-----------
* Every method takes a batch of states and returns a batch; nothing is stored on the env.
* Masks: ``True`` means allowed.  For discrete envs the forward mask has ``n_actions``
  columns and the *last* column is the exit (terminate) action; the backward mask has
  ``n_backward_actions`` columns and no exit.
* A trajectory is ``s_0 -> s_1 -> ... -> s_n = x`` followed by the exit action at ``x``.
  There is no explicit sink state.
* ``log_reward`` may be ``-inf`` only for objects the environment declares invalid;
  objectives floor it (see ``gfn.objectives.base.LOG_REWARD_FLOOR``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch

from gfn.states import States, batch_index, batch_len


class EnvError(ValueError):
    """Raised when an environment is called with invalid input or breaks its contract."""


class Reward:
    """A reward function on terminal states, kept apart from the dynamics.

    Subclasses implement ``reward(states)`` (non-negative) or ``log_reward(states)``.
    """

    def reward(self, states: States) -> torch.Tensor:
        """Reward R(x) >= 0 of each state; override this or :meth:`log_reward`."""
        raise NotImplementedError(f"{type(self).__name__} must implement reward() or log_reward()")

    def log_reward(self, states: States) -> torch.Tensor:
        """log R(x); the default takes the log of :meth:`reward` after checking its sign."""
        r = self.reward(states)
        if torch.is_tensor(r) and (r < 0).any():
            bad = int((r < 0).nonzero()[0, 0])
            raise EnvError(
                f"{type(self).__name__}.reward returned a negative reward {float(r[bad]):.4g} "
                f"at batch position {bad}; rewards must be >= 0"
            )
        return torch.log(r)


class Env(ABC):
    """Abstract batched environment; use :class:`DiscreteEnv` or :class:`ContinuousEnv`."""

    #: shape of one state (without the batch dimension), for tensor states
    state_shape: tuple = ()
    #: dtype of tensor states (None: not checked)
    state_dtype: Optional[torch.dtype] = None
    #: True when log_reward is meaningful for non-terminal states (forward-looking objectives)
    provides_intermediate_rewards: bool = False
    #: True for environments whose transitions are random given the action (see
    #: :class:`StochasticDiscreteEnv`); deterministic environments leave it False
    is_stochastic: bool = False

    def __init__(self, reward: Optional[Reward] = None, device: str | torch.device = "cpu"):
        self.reward = reward
        self.device = torch.device(device)

    # ------------------------------------------------------------------ contract
    @abstractmethod
    def initial_states(self, n: int) -> States:
        """A batch of ``n`` copies of the initial state s_0."""

    @abstractmethod
    def step(self, states: States, actions: torch.Tensor) -> States:
        """Apply non-exit forward actions; returns the child states."""

    @abstractmethod
    def backward_step(self, states: States, actions: torch.Tensor) -> States:
        """Apply backward actions; returns the parent states."""

    @abstractmethod
    def forward_mask(self, states: States) -> torch.Tensor:
        """Boolean mask of allowed forward actions (True = allowed)."""

    @abstractmethod
    def backward_mask(self, states: States) -> torch.Tensor:
        """Boolean mask of allowed backward actions (True = allowed)."""

    def log_reward(self, states: States) -> torch.Tensor:
        """log R(x) for a batch of terminal states; delegates to ``self.reward``."""
        if self.reward is None:
            raise EnvError(f"{type(self).__name__} has no reward object and does not override log_reward()")
        return self.reward.log_reward(states)

    # ------------------------------------------------------------------ optional hooks
    def featurize(self, states: States) -> torch.Tensor:
        """Float features of states for policies (default: the state tensor as float)."""
        return states.float().reshape(batch_len(states), -1)

    @property
    def feature_dim(self) -> int:
        """Size of the vectors returned by :meth:`featurize`."""
        return int(self.featurize(self.initial_states(1)).shape[-1])

    def enumerate_states(self) -> Optional[States]:
        """All states (for exact metrics on small spaces), or None if not enumerable."""
        return None

    def state_index(self, states: States) -> torch.Tensor:
        """Index of each state in :meth:`enumerate_states` (needed for exact metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement state_index()")

    def is_initial(self, states: States) -> torch.Tensor:
        """True where a state is s_0 (default: it has no allowed backward action)."""
        return ~self.backward_mask(states).reshape(batch_len(states), -1).any(-1)

    @property
    def transitions_are_actions(self) -> bool:
        """True when distinct actions at a state always lead to distinct states, so that a
        transition's log-probability is its action's (:meth:`transition_log_prob` not overridden).
        Batched scoring then takes a path without per-row gathers."""
        return type(self).transition_log_prob is Env.transition_log_prob

    def transition_log_prob(self, dist, states: States, actions: torch.Tensor, backward: bool = False) -> torch.Tensor:
        """log-probability of the *transition* that ``actions`` make from ``states`` under the
        action distribution ``dist``.  The default is ``dist.log_prob(actions)``; MDPs in which
        several actions lead to the same state override this to sum their probabilities."""
        return dist.log_prob(actions)

    @property
    def is_enumerable(self) -> bool:
        """Whether exact metrics are available."""
        return type(self).enumerate_states is not Env.enumerate_states

    # ------------------------------------------------------------------ validated entry points
    def validate_states(self, states: States, what: str = "states") -> None:
        """Raise :class:`EnvError` if a tensor state batch has the wrong shape or dtype."""
        if not isinstance(states, torch.Tensor):
            return
        if states.dim() < 1 or tuple(states.shape[1:]) != tuple(self.state_shape):
            raise EnvError(
                f"{type(self).__name__}: {what} have shape {tuple(states.shape)}, expected "
                f"(batch, {', '.join(map(str, self.state_shape))})"
            )
        if self.state_dtype is not None and states.dtype != self.state_dtype:
            raise EnvError(f"{type(self).__name__}: {what} have dtype {states.dtype}, expected {self.state_dtype}")

    def checked_log_reward(self, states: States) -> torch.Tensor:
        """:meth:`log_reward` with checks: shape [N], no NaN, no +inf (``-inf`` is allowed)."""
        lr = self.log_reward(states)
        n = batch_len(states)
        if not torch.is_tensor(lr) or lr.shape != (n,):
            shape = tuple(lr.shape) if torch.is_tensor(lr) else type(lr).__name__
            raise EnvError(f"{type(self).__name__}.log_reward must return a tensor of shape ({n},), got {shape}")
        bad = torch.isnan(lr) | (lr == float("inf"))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            kind = "NaN" if torch.isnan(lr[i]) else "+inf"
            raise EnvError(
                f"{type(self).__name__}: log reward is {kind} at batch position {i} "
                f"({int(bad.sum())} of {n} states); rewards must be finite and >= 0"
            )
        return lr


class DiscreteEnv(Env):
    """Environment with a finite action set; the last forward action is exit."""

    #: number of forward actions including exit (exit = ``n_actions - 1``)
    n_actions: int
    #: number of backward actions (default: ``n_actions - 1``)
    n_backward_actions: Optional[int] = None

    def __init__(self, n_actions: int, n_backward_actions: Optional[int] = None, **kw):
        super().__init__(**kw)
        self.n_actions = int(n_actions)
        self.n_backward_actions = int(n_backward_actions if n_backward_actions is not None else n_actions - 1)

    @property
    def exit_action(self) -> int:
        """Index of the exit (terminate) action."""
        return self.n_actions - 1

    def is_exit(self, actions: torch.Tensor) -> torch.Tensor:
        """True where an action is exit."""
        return actions == self.exit_action

    def backward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """For forward ``actions`` taken at ``states``, the backward action at the child
        that undoes them (default: same index)."""
        return actions

    def forward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """For backward ``actions`` taken at ``states``, the forward action at the parent
        that leads back (default: same index)."""
        return actions

    def check_actions(self, mask: torch.Tensor, actions: torch.Tensor, states: States, backward: bool = False) -> None:
        """Raise :class:`EnvError` naming the first action that ``mask`` forbids."""
        n = self.n_backward_actions if backward else self.n_actions
        kind = "backward action" if backward else "action"
        if actions.dtype != torch.long or actions.dim() != 1:
            raise EnvError(f"{type(self).__name__}: {kind}s must be a 1-D long tensor, got "
                           f"shape {tuple(actions.shape)} dtype {actions.dtype}")
        out_of_range = (actions < 0) | (actions >= n)
        if out_of_range.any():
            i = int(out_of_range.nonzero()[0, 0])
            raise EnvError(f"{type(self).__name__}: {kind} {int(actions[i])} at batch position {i} "
                           f"is out of range [0, {n})")
        ok = mask.gather(1, actions.unsqueeze(1)).squeeze(1)
        if not ok.all():
            i = int((~ok).nonzero()[0, 0])
            state = states[i].tolist() if isinstance(states, torch.Tensor) else f"#{i}"
            raise EnvError(f"{type(self).__name__}: invalid {kind} {int(actions[i])} in state {state} "
                           f"(batch position {i}); allowed: {mask[i].nonzero().flatten().tolist()}")

    def apply(self, states: States, actions: torch.Tensor, backward: bool = False) -> States:
        """Validated ``step``/``backward_step``: checks state shape, action range and masks."""
        self.validate_states(states)
        if batch_len(states) != actions.shape[0]:
            raise EnvError(f"{type(self).__name__}: {batch_len(states)} states but {actions.shape[0]} actions")
        if backward:
            self.check_actions(self.backward_mask(states), actions, states, backward=True)
            return self.backward_step(states, actions)
        if self.is_exit(actions).any():
            i = int(self.is_exit(actions).nonzero()[0, 0])
            raise EnvError(f"{type(self).__name__}: exit action at batch position {i} passed to step(); "
                           "exit ends the trajectory and has no child state")
        self.check_actions(self.forward_mask(states), actions, states)
        return self.step(states, actions)


class ContinuousEnv(Env):
    """Environment over continuous states in R^d with continuous actions.

    Actions are float tensors ``[N, action_dim]``; the exit action is a row of ``-inf``
    (see :meth:`exit_actions`).  ``forward_mask`` returns ``[N, 2]`` booleans
    (continue allowed, exit allowed); ``backward_mask`` returns ``[N, 1]`` (has a parent).
    The policy owns the action distribution (e.g. mixtures of Betas or Gaussians): a
    subclass describes it with :meth:`forward_family` and :meth:`backward_family`
    (see :mod:`gfn.continuous`); ``gfn.build_gflownet(env)`` then builds its default model and
    :meth:`random_actions` comes for free.  Subclasses may override :meth:`check_actions` to validate moves in :meth:`apply`.
    """

    action_dim: int = 1

    def is_exit(self, actions: torch.Tensor) -> torch.Tensor:
        """True where an action is the exit sentinel (all ``-inf``)."""
        return torch.isneginf(actions).all(dim=-1)

    def exit_actions(self, n: int) -> torch.Tensor:
        """A batch of exit actions."""
        return torch.full((n, self.action_dim), float("-inf"), device=self.device)

    def backward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """The backward action at the child that undoes ``actions`` (default: same vector)."""
        return actions

    def forward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """The forward action at the parent that redoes backward ``actions`` (default: same)."""
        return actions

    # ------------------------------------------------------------------ policies (gfn.continuous)
    def forward_family(self):
        """The :class:`gfn.continuous.ActionFamily` of P_F (action distribution incl. exit)."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward_family()")

    def backward_family(self, fixed: bool = False):
        """The :class:`gfn.continuous.ActionFamily` of P_B; ``fixed`` asks for a parameter-free one."""
        raise NotImplementedError(f"{type(self).__name__} does not define backward_family()")

    def random_actions(self, states: States, generator: Optional[torch.Generator] = None,
                       backward: bool = False) -> torch.Tensor:
        """Actions drawn from the policy family with all-zero parameters (used by ``check_env``)."""
        fam = self.backward_family(fixed=True) if backward else self.forward_family()
        n = batch_len(states)
        params = torch.zeros(n, fam.n_params, device=self.device) if fam.n_params else None
        return fam(params, states).sample(generator=generator)

    def check_actions(self, states: States, actions: torch.Tensor, backward: bool = False) -> None:
        """Raise :class:`EnvError` for actions that are not valid moves (default: no check)."""

    def apply(self, states: States, actions: torch.Tensor, backward: bool = False) -> States:
        """Validated ``step``/``backward_step``: checks shapes and finiteness of actions, then
        :meth:`check_actions`."""
        self.validate_states(states)
        if actions.dim() != 2 or actions.shape[0] != batch_len(states) or actions.shape[1] != self.action_dim:
            raise EnvError(f"{type(self).__name__}: actions must have shape ({batch_len(states)}, "
                           f"{self.action_dim}), got {tuple(actions.shape)}")
        if not torch.isfinite(actions).all():
            i = int((~torch.isfinite(actions).all(-1)).nonzero()[0, 0])
            what = "exit" if bool(self.is_exit(actions[i:i + 1])[0]) else "non-finite"
            raise EnvError(f"{type(self).__name__}: {what} action {actions[i].tolist()} at batch position {i} "
                           f"passed to {'backward_step' if backward else 'step'}")
        self.check_actions(states, actions, backward)
        return self.backward_step(states, actions) if backward else self.step(states, actions)


class StochasticDiscreteEnv(DiscreteEnv):
    """Opt-in contract for discrete environments whose transitions are random given the action.

    ``step``/``backward_step`` and the masks still describe the (deterministic) state graph: a
    forward index names a *move*, the edge actually taken.  The policy chooses an *action* (same
    index space, same forward mask); :meth:`sample_moves` draws the move the environment makes
    of it.  When the dynamics are known, :meth:`move_log_probs` scores them, so exact metrics
    and ``stochastic_db`` with exact dynamics are available; otherwise a learned dynamics model
    stands in.  The sampler records the chosen action at each row and the backward action of
    the realised move at the child.
    """

    is_stochastic = True

    @abstractmethod
    def sample_moves(self, states: States, actions: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The move (a forward index allowed at ``states``) made for each non-exit action."""

    def move_log_probs(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """log P(move | state, action), ``[N, n_actions - 1]`` (-inf where a move cannot happen);
        only for environments with known dynamics."""
        raise NotImplementedError(f"{type(self).__name__} does not know its transition probabilities "
                                  "(use a learned dynamics model)")

    @property
    def knows_dynamics(self) -> bool:
        """Whether :meth:`move_log_probs` is implemented."""
        return type(self).move_log_probs is not StochasticDiscreteEnv.move_log_probs

    def move_between(self, parents: States, children: States) -> torch.Tensor:
        """Index of the move leading from each parent to its child (-1 where none does); the
        default tries every move, batched over the states."""
        n = batch_len(parents)
        moves = torch.full((n,), -1, dtype=torch.long, device=self.device)
        mask = self.forward_mask(parents)
        flat_c = children.reshape(n, -1) if torch.is_tensor(children) else None
        if flat_c is None:
            raise NotImplementedError(f"{type(self).__name__} must override move_between() for non-tensor states")
        for m in range(self.n_actions - 1):  # a loop over move kinds, each batched over states
            rows = mask[:, m].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            kids = self.step(batch_index(parents, rows), torch.full_like(rows, m)).reshape(rows.numel(), -1)
            hit = (kids == flat_c[rows]).all(-1)
            moves[rows[hit]] = m
        return moves

    def outcome_log_prob(self, states: States, actions: torch.Tensor, children: States) -> torch.Tensor:
        """log P(children | states, actions) for known dynamics (-inf for impossible outcomes)."""
        moves = self.move_between(states, children)
        lp = self.move_log_probs(states, actions)
        out = lp.gather(1, moves.clamp(min=0).unsqueeze(1)).squeeze(1)
        return out.masked_fill(moves < 0, float("-inf"))
