"""Sequence MDPs over a finite alphabet and the :class:`SequenceEnv` that runs them.

A state is a long tensor ``[N, max_len]`` of tokens in ``[0, V)`` with ``PAD = -1`` in empty
slots.  Three ways of building a sequence (the *MDP*) share this representation:

``append``          autoregressive, left to right: forward action ``c < V`` appends token ``c``;
                    one backward action (delete the last token).  Strings are left-aligned.
``prepend_append``  "seqPA": forward actions ``c`` (append c) and ``V + c`` (prepend c); backward
                    actions ``0`` (DelLast) and ``1`` (DelFirst).  Different actions can lead to
                    the same child (from the empty string, or from ``c^k``: append c == prepend c;
                    at ``c^k`` DelLast == DelFirst), so :meth:`SequenceEnv.transition_log_prob`
                    sums the probabilities of all actions that reach the same state.
``fill``            non-autoregressive, fixed length: forward action ``p * V + c`` writes token c at
                    the empty position p; backward action ``p`` clears position p.

The exit action is always last.  Exit is allowed when ``min_len <= length`` (``fill``: only when
every position is filled); ``length == max_len`` allows only exit.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from gfn.env import DiscreteEnv, EnvError, Reward

PAD = -1

#: largest number of states for which exact (enumeration-based) metrics are offered
ENUMERATION_LIMIT = 2_000_000


class SequenceMDP:
    """How sequences are built: actions, masks and the state <-> index bijection."""

    name = ""

    def __init__(self, vocab_size: int, max_len: int, min_len: int):
        self.V, self.L, self.min_len = int(vocab_size), int(max_len), int(min_len)

    # ------------------------------------------------------------ shared helpers
    @staticmethod
    def lengths(states: torch.Tensor) -> torch.Tensor:
        """Number of filled (non-PAD) positions of each state."""
        return (states >= 0).sum(-1)

    def exit_allowed(self, states: torch.Tensor) -> torch.Tensor:
        """True where the state may be a sampled object."""
        n = self.lengths(states)
        return (n >= self.min_len) & (n <= self.L)

    def transition_log_prob(self, dist, states, actions, backward: bool) -> torch.Tensor:
        """log-probability of the transition made by ``actions`` (default: one action per child)."""
        return dist.log_prob(actions)

    # ------------------------------------------------------------ left-aligned enumeration
    def _powers(self, device) -> torch.Tensor:
        return self.V ** torch.arange(self.L, device=device, dtype=torch.long)

    @property
    def n_states(self) -> int:
        """Number of states (all lengths 0..max_len)."""
        return sum(self.V ** k for k in range(self.L + 1))

    def enumerate(self, device) -> torch.Tensor:
        """All left-aligned strings of length 0..L, shortest first, each length in lexicographic order."""
        out = []
        for k in range(self.L + 1):
            idx = torch.arange(self.V ** k, device=device, dtype=torch.long)
            pw = self.V ** torch.arange(k - 1, -1, -1, device=device, dtype=torch.long)
            toks = (idx.unsqueeze(1) // pw) % self.V if k > 0 else idx.new_zeros(1, 0)
            pad = torch.full((idx.numel(), self.L - k), PAD, dtype=torch.long, device=device)
            out.append(torch.cat([toks, pad], 1))
        return torch.cat(out)

    def index(self, states: torch.Tensor) -> torch.Tensor:
        """Position of each left-aligned state in :meth:`enumerate`."""
        n = self.lengths(states)
        offsets = torch.tensor([sum(self.V ** j for j in range(k)) for k in range(self.L + 1)],
                               device=states.device, dtype=torch.long)
        # token i of a length-n string has weight V^(n-1-i)
        exps = (n.unsqueeze(1) - 1 - torch.arange(self.L, device=states.device)).clamp(min=0)
        w = self._powers(states.device)[exps]
        return offsets[n] + (states.clamp(min=0) * w * (states >= 0)).sum(-1)


class AppendMDP(SequenceMDP):
    """Autoregressive: append a token at the right end; the backward action deletes the last."""

    name = "append"

    @property
    def n_actions(self) -> int:
        """V append actions + exit."""
        return self.V + 1

    @property
    def n_backward_actions(self) -> int:
        """One backward action: delete the last token."""
        return 1

    def step(self, states, actions):
        """Write ``actions`` at the first empty slot."""
        return states.scatter(1, self.lengths(states).unsqueeze(1), actions.unsqueeze(1))

    def backward_step(self, states, actions):
        """Clear the last filled slot."""
        return states.scatter(1, (self.lengths(states) - 1).unsqueeze(1), PAD)

    def forward_mask(self, states):
        """Append while not full; exit when long enough."""
        n = self.lengths(states)
        grow = (n < self.L).unsqueeze(1).expand(-1, self.V)
        return torch.cat([grow, (n >= self.min_len).unsqueeze(1)], 1)

    def backward_mask(self, states):
        """Delete-last allowed on non-empty strings."""
        return (self.lengths(states) > 0).unsqueeze(1)

    def backward_action(self, states, actions):
        """Every append is undone by backward action 0."""
        return torch.zeros_like(actions)

    def forward_action(self, states, actions):
        """Deleting the last token is undone by appending it."""
        return states.gather(1, (self.lengths(states) - 1).unsqueeze(1)).squeeze(1)


class PrependAppendMDP(SequenceMDP):
    """seqPA: append (``c``) or prepend (``V + c``) a token; DelLast (0) or DelFirst (1) backward."""

    name = "prepend_append"

    @property
    def n_actions(self) -> int:
        """V append + V prepend actions + exit."""
        return 2 * self.V + 1

    @property
    def n_backward_actions(self) -> int:
        """DelLast (0) and DelFirst (1)."""
        return 2

    def step(self, states, actions):
        """Append ``c`` or shift right and write ``c`` first (left-aligned strings)."""
        rows = torch.arange(states.shape[0], device=states.device)
        tok = actions % self.V
        app = states.clone()
        app[rows, self.lengths(states)] = tok
        pre = torch.cat([tok.unsqueeze(1), states[:, :-1]], 1)
        return torch.where((actions < self.V).unsqueeze(1), app, pre)

    def backward_step(self, states, actions):
        """DelLast clears the last slot; DelFirst shifts left."""
        rows = torch.arange(states.shape[0], device=states.device)
        last = states.clone()
        last[rows, self.lengths(states) - 1] = PAD
        first = torch.cat([states[:, 1:], torch.full_like(states[:, :1], PAD)], 1)
        return torch.where((actions == 0).unsqueeze(1), last, first)

    def forward_mask(self, states):
        """Grow at either end while not full; exit when long enough."""
        n = self.lengths(states)
        grow = (n < self.L).unsqueeze(1).expand(-1, 2 * self.V)
        return torch.cat([grow, self.exit_allowed(states).unsqueeze(1)], 1)

    def backward_mask(self, states):
        """Both deletions allowed on non-empty strings."""
        return (self.lengths(states) > 0).unsqueeze(1).expand(-1, 2).contiguous()

    def backward_action(self, states, actions):
        """Append is undone by DelLast (0), prepend by DelFirst (1)."""
        return (actions >= self.V).long()

    def forward_action(self, states, actions):
        """DelLast is undone by appending the last token, DelFirst by prepending the first."""
        rows = torch.arange(states.shape[0], device=states.device)
        last = states[rows, (self.lengths(states) - 1).clamp(min=0)]
        return torch.where(actions == 0, last, self.V + states[:, 0])

    @staticmethod
    def constant(states) -> torch.Tensor:
        """True for non-empty strings made of one repeated token (``c^k``)."""
        first = states[:, :1]
        return ((states == first) | (states < 0)).all(-1) & (first[:, 0] >= 0)

    def transition_log_prob(self, dist, states, actions, backward: bool) -> torch.Tensor:
        """Sum the probabilities of all actions that lead to the same state.

        Forward: at the empty string and at ``c^k``, "append c" and "prepend c" give the same
        child.  Backward: at ``c^k`` (k >= 1), DelLast and DelFirst give the same parent.
        """
        lp = dist.log_probs
        own = lp.gather(1, actions.unsqueeze(1)).squeeze(1)
        const = self.constant(states)
        if backward:
            both = torch.logaddexp(lp[:, 0], lp[:, 1])
            return torch.where(const, both, own)
        is_exit = actions == 2 * self.V
        tok = actions % self.V
        empty = self.lengths(states) == 0
        dup = ~is_exit & (empty | (const & (states[:, 0] == tok)))
        partner = torch.where(actions < self.V, actions + self.V, actions - self.V).clamp(0, lp.shape[1] - 1)
        other = lp.gather(1, partner.unsqueeze(1)).squeeze(1)
        # logaddexp only where it is used: keeps gradients of unused rows clean
        summed = torch.logaddexp(own, torch.where(dup, other, torch.full_like(other, float("-inf"))))
        return torch.where(dup, summed, own)


class FillMDP(SequenceMDP):
    """Non-autoregressive, fixed length: write token c at any empty position p (``p * V + c``)."""

    name = "fill"

    def __init__(self, vocab_size: int, max_len: int, min_len: int):
        if min_len != max_len:
            raise EnvError(f"the 'fill' MDP builds fixed-length sequences; got min_len={min_len} != max_len={max_len}")
        super().__init__(vocab_size, max_len, min_len)
        self._cols: dict = {}

    @property
    def n_actions(self) -> int:
        """L * V write actions + exit."""
        return self.L * self.V + 1

    @property
    def n_backward_actions(self) -> int:
        """Clear position p (L actions)."""
        return self.L

    def step(self, states, actions):
        """Write token ``a % V`` at position ``a // V``."""
        return states.scatter(1, (actions // self.V).unsqueeze(1), (actions % self.V).unsqueeze(1))

    def backward_step(self, states, actions):
        """Clear position ``a``."""
        return states.scatter(1, actions.unsqueeze(1), PAD)

    def _mask_columns(self, device) -> torch.Tensor:
        """Column of ``[empty positions | all filled]`` that decides each forward action."""
        cols = self._cols.get(device)
        if cols is None:
            cols = self._cols[device] = torch.cat([torch.arange(self.L, device=device).repeat_interleave(self.V),
                                                   torch.tensor([self.L], device=device)])
        return cols

    def forward_mask(self, states):
        """Writes allowed at empty positions; exit only when all positions are filled."""
        empty = states < 0
        return torch.cat([empty, ~empty.any(1, keepdim=True)], 1)[:, self._mask_columns(states.device)]

    def backward_mask(self, states):
        """Filled positions can be cleared."""
        return states >= 0

    def backward_action(self, states, actions):
        """Writing at p is undone by clearing p."""
        return actions // self.V

    def forward_action(self, states, actions):
        """Clearing p is undone by writing the token that was there."""
        rows = torch.arange(states.shape[0], device=states.device)
        return actions * self.V + states[rows, actions]

    @property
    def n_states(self) -> int:
        """(V + 1)^L partial assignments."""
        return (self.V + 1) ** self.L

    def enumerate(self, device) -> torch.Tensor:
        """All partial assignments; position 0 is the most significant digit, PAD is digit 0."""
        idx = torch.arange(self.n_states, device=device, dtype=torch.long)
        pw = (self.V + 1) ** torch.arange(self.L - 1, -1, -1, device=device, dtype=torch.long)
        return (idx.unsqueeze(1) // pw) % (self.V + 1) - 1

    def index(self, states):
        """Position of each state in :meth:`enumerate`."""
        pw = (self.V + 1) ** torch.arange(self.L - 1, -1, -1, device=states.device, dtype=torch.long)
        return ((states + 1) * pw).sum(-1)


MDPS = {"append": AppendMDP, "prepend_append": PrependAppendMDP, "fill": FillMDP}


class SequenceEnv(DiscreteEnv):
    """Batched environment of token sequences built by one of :data:`MDPS`.

    ``vocab_size`` tokens (``alphabet`` gives them letters), lengths ``min_len..max_len``
    (fixed length when equal).  The reward is a :class:`gfn.env.Reward` on terminal states.
    """

    state_dtype = torch.long

    def __init__(self, vocab_size: int, max_len: int, min_len: Optional[int] = None, mdp: str = "append",
                 reward: Optional[Reward] = None, alphabet: Optional[Sequence[str]] = None,
                 device: str | torch.device = "cpu"):
        if vocab_size < 1 or max_len < 1:
            raise EnvError(f"SequenceEnv needs vocab_size >= 1 and max_len >= 1, got {vocab_size}, {max_len}")
        min_len = max_len if min_len is None else int(min_len)
        if not 0 <= min_len <= max_len:
            raise EnvError(f"SequenceEnv needs 0 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
        if mdp not in MDPS:
            raise EnvError(f"unknown sequence MDP {mdp!r}; choose one of {', '.join(MDPS)}")
        if alphabet is not None and len(alphabet) != vocab_size:
            raise EnvError(f"alphabet has {len(alphabet)} letters but vocab_size is {vocab_size}")
        self.mdp = MDPS[mdp](vocab_size, max_len, min_len)
        super().__init__(n_actions=self.mdp.n_actions, n_backward_actions=self.mdp.n_backward_actions,
                         reward=reward, device=device)
        self.vocab_size, self.max_len, self.min_len = int(vocab_size), int(max_len), min_len
        self.alphabet = list(alphabet) if alphabet is not None else None
        self.state_shape = (self.max_len,)
        # one-hot rows indexed by token + 1: row 0 (PAD) marks the "empty" symbol, the last column
        eye = torch.eye(self.vocab_size + 1, device=self.device)
        self._onehot_rows = torch.cat([eye[-1:], eye[:-1]])

    # ------------------------------------------------------------ contract
    def initial_states(self, n: int) -> torch.Tensor:
        """``n`` empty sequences."""
        return torch.full((n, self.max_len), PAD, dtype=torch.long, device=self.device)

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply non-exit forward actions."""
        return self.mdp.step(states, actions)

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply backward actions."""
        return self.mdp.backward_step(states, actions)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Allowed forward actions (exit last)."""
        return self.mdp.forward_mask(states)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Allowed backward actions."""
        return self.mdp.backward_mask(states)

    def backward_action(self, states, actions):
        """Backward action at the child that undoes forward ``actions`` taken at ``states``."""
        return self.mdp.backward_action(states, actions)

    def forward_action(self, states, actions):
        """Forward action at the parent that redoes backward ``actions`` taken at ``states``."""
        return self.mdp.forward_action(states, actions)

    @property
    def transitions_are_actions(self) -> bool:
        """True unless the MDP merges actions that reach the same state (prepend-append)."""
        return type(self.mdp).transition_log_prob is SequenceMDP.transition_log_prob

    def transition_log_prob(self, dist, states, actions, backward: bool = False) -> torch.Tensor:
        """Transition log-probability; sums over actions leading to the same state (seqPA)."""
        return self.mdp.transition_log_prob(dist, states, actions, backward)

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """log R of terminal states; ``-inf`` for partial states (which are never objects).

        Exact metrics ask for the reward of every enumerated state and mask non-terminal ones,
        so partial states are answered here instead of reaching the reward object."""
        term = self.mdp.exit_allowed(states)
        if bool(term.all()):
            return super().log_reward(states)
        out = torch.full((states.shape[0],), float("-inf"), device=states.device)
        rows = term.nonzero().squeeze(1)
        if rows.numel():
            out[rows] = super().log_reward(states[rows]).to(out.dtype)
        return out

    def is_initial(self, states: torch.Tensor) -> torch.Tensor:
        """True for the empty sequence."""
        return (states < 0).all(-1)

    def validate_states(self, states, what: str = "states") -> None:
        """Shape/dtype checks plus token range (PAD or ``0..V-1``)."""
        super().validate_states(states, what)
        if states.numel() and bool(((states < PAD) | (states >= self.vocab_size)).any()):
            raise EnvError(f"{type(self).__name__}: {what} contain tokens outside [-1, {self.vocab_size})")

    # ------------------------------------------------------------ features and enumeration
    def lengths(self, states: torch.Tensor) -> torch.Tensor:
        """Number of filled positions of each state."""
        return self.mdp.lengths(states)

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        """One-hot per position over ``V + 1`` symbols (the last one means empty), flattened."""
        # a row lookup (2 ops) instead of F.one_hot, which range-checks its input with host syncs
        return self._onehot_rows[states + 1].view(states.shape[0], self.feature_dim)

    @property
    def feature_dim(self) -> int:
        """``max_len * (V + 1)``."""
        return self.max_len * (self.vocab_size + 1)

    @property
    def n_states(self) -> int:
        """Number of states of the MDP (including partial ones)."""
        return self.mdp.n_states

    @property
    def is_enumerable(self) -> bool:
        """Exact metrics are offered when the state space has at most ``ENUMERATION_LIMIT`` states."""
        return self.n_states <= ENUMERATION_LIMIT

    def enumerate_states(self) -> torch.Tensor:
        """All states, in :meth:`state_index` order."""
        if not self.is_enumerable:
            raise EnvError(f"{type(self).__name__} has {self.n_states} states (> {ENUMERATION_LIMIT}): not enumerable")
        return self.mdp.enumerate(self.device)

    def state_index(self, states: torch.Tensor) -> torch.Tensor:
        """Index of each state in :meth:`enumerate_states` (defined whenever it fits in int64)."""
        if self.n_states >= 2 ** 62:
            raise EnvError(f"{type(self).__name__}: {self.n_states} states do not fit an int64 index")
        return self.mdp.index(states)

    def terminal_code(self, states: torch.Tensor) -> torch.Tensor:
        """An int64 code of full/terminal sequences, or None when the space is too large."""
        return self.state_index(states) if self.n_states < 2 ** 62 else None

    # ------------------------------------------------------------ strings
    def to_strings(self, states: torch.Tensor) -> list[str]:
        """Sequences as strings over ``alphabet`` (token ids joined by ',' without one)."""
        rows = states.tolist()
        if self.alphabet is None:
            return [",".join(str(t) for t in r if t >= 0) for r in rows]
        return ["".join(self.alphabet[t] for t in r if t >= 0) for r in rows]

    def from_strings(self, strings: Sequence[str]) -> torch.Tensor:
        """Left-aligned states from strings over ``alphabet`` (loud error on unknown letters)."""
        if self.alphabet is None:
            raise EnvError(f"{type(self).__name__} has no alphabet; build states from token ids instead")
        lookup = {ch: i for i, ch in enumerate(self.alphabet)}
        out = torch.full((len(strings), self.max_len), PAD, dtype=torch.long)
        for i, s in enumerate(strings):
            if len(s) > self.max_len:
                raise EnvError(f"string {s!r} is longer than max_len={self.max_len}")
            try:
                out[i, :len(s)] = torch.tensor([lookup[ch] for ch in s], dtype=torch.long)
            except KeyError as e:
                raise EnvError(f"string {s!r} has letter {e.args[0]!r} outside the alphabet {''.join(self.alphabet)}") from None
        return out.to(self.device)

    def build_gflownet(self, flow: bool = False, arch: str = "mlp", **kw):
        """Default model for this env: MLP on one-hot, or a small Transformer / GRU (``arch``)."""
        from gfn.envs.sequences.policies import build_sequence_gflownet
        return build_sequence_gflownet(self, arch=arch, flow=flow, **kw)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(mdp={self.mdp.name}, vocab_size={self.vocab_size}, "
                f"length={self.min_len}..{self.max_len})")
