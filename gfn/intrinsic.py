"""Intrinsic rewards from random network distillation (GAFN, Pan et al. 2023, "Generative
Augmented Flow Networks").

:class:`RND` keeps a fixed, randomly initialised target network ``f`` and a predictor ``f_hat``
trained to imitate it on the states the sampler visits; the intrinsic reward of a state is the
prediction error ``r(s) = ||f_hat(s) - f(s)||^2 / d``, large on states rarely seen and decaying as
they are visited.  :class:`IntrinsicReward` is a batch hook that augments the rewards the
objective trains on (metrics, replay buffers and mode counts keep the task reward):

* ``mode="edge"`` (GAFN's edge-based augmentation, written for TB): every transition
  ``s -> s'`` carries ``eta * r(s')``, so a trajectory's reward becomes
  ``R(x) + eta * sum_{t >= 1} r(s_t)`` (the terminal state included);
* ``mode="state"`` (terminal augmentation): ``R(x) + eta * r(x)``;
* ``mode="flow"`` (the GAFN authors' TB form, their ``--augmented 1``): the bonus of each
  intermediate state enters the backward term through a learned state flow,
  ``log(R(x) + eta r(x)) + sum_t log(P_B(s_t | s_{t+1}) + eta r(s_{t+1}) / F(s_{t+1}))``
  (:class:`gfn.objectives.tb_variants.AugmentedFlowTB`; TB only, a log F head is added).

The first two are written into ``batch.log_rewards`` as ``log(R + eta * bonus)``, so they compose
with every objective; for DB/SubTB the edge form puts the trajectory's summed bonus on its
terminal state.  The flow form writes the terminal bonus the same way and the per-state bonuses
into ``batch.info["intrinsic_row_bonus"]``.  The predictor takes one gradient step on the
batch's states after the bonus is computed (its own Adam optimiser).

``install_intrinsic(trainer, eta, mode)`` adds the hook (``--intrinsic rnd:eta[,mode]``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gfn.estimators import mlp
from gfn.ops import segment_sum
from gfn.trajectories import TrajectoryBatch

MODES = ("edge", "state", "flow")


ERRORS = ("mse", "l2")

#: RND settings of the GAFN authors' hypergrid code (also torchgfn's GAFN example): 2 x 256
#: LeakyReLU MLPs with 128 outputs, bonus = Euclidean norm of the prediction error.
PAPER_RND = dict(hidden=256, out_dim=128, n_layers=2, activation=nn.LeakyReLU, error="l2")


class RND(nn.Module):
    """Random network distillation on ``env.featurize`` features.

    ``error="mse"`` (default) scores a state by ``||f_hat(s) - f(s)||^2 / d``; ``error="l2"`` by
    the norm ``||f_hat(s) - f(s)||`` as in the GAFN authors' code (:data:`PAPER_RND`)."""

    def __init__(self, env, hidden: int = 128, out_dim: int = 64, n_layers: int = 2, lr: float = 1e-3,
                 activation: type[nn.Module] = nn.ReLU, error: str = "mse"):
        super().__init__()
        if error not in ERRORS:
            raise ValueError(f"RND error must be one of {', '.join(ERRORS)}, got {error!r}")
        self.env = env
        d = env.feature_dim
        self.target = mlp(d, out_dim, hidden, n_layers, activation)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.predictor = mlp(d, out_dim, hidden, n_layers, activation)
        self.out_dim, self.error_kind = out_dim, error
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def error(self, states) -> torch.Tensor:
        """Per-state prediction error, ``||f_hat(s) - f(s)||^2 / d`` or ``||f_hat(s) - f(s)||``
        (differentiable in the predictor)."""
        x = self.env.featurize(states).float()
        with torch.no_grad():
            t = self.target(x)
        diff = self.predictor(x) - t
        return diff.pow(2).mean(-1) if self.error_kind == "mse" else torch.linalg.vector_norm(diff, dim=-1)

    @torch.no_grad()
    def intrinsic_reward(self, states) -> torch.Tensor:
        """``r(s) >= 0`` of each state (no gradient)."""
        return self.error(states)

    def update(self, states) -> float:
        """One predictor step on ``states`` (the visited ones); returns the loss before the step."""
        with torch.enable_grad():
            loss = self.error(states).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())


class IntrinsicReward:
    """Batch hook ``(trainer, batch) -> batch`` adding ``eta`` times the RND bonus to the rewards."""

    def __init__(self, rnd: RND, eta: float, mode: str = "edge"):
        if mode not in MODES:
            raise ValueError(f"intrinsic reward mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not eta > 0:
            raise ValueError(f"intrinsic reward weight eta must be > 0, got {eta}")
        self.rnd, self.eta, self.mode = rnd, float(eta), mode
        #: mean bonus of the last batch (logged through batch.info)
        self.last_mean: float = float("nan")

    def bonus(self, batch: TrajectoryBatch) -> torch.Tensor:
        """Per-trajectory bonus: summed over the states after s_0 (edge) or at the terminal state."""
        r = self.rnd.intrinsic_reward(batch.states)
        if self.mode == "state":
            return r[batch.last_rows]
        return segment_sum(r.masked_fill(batch.is_first, 0.0), batch.ptr)

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        info = dict(batch.info)
        if self.mode == "flow":
            from gfn.objectives.tb_variants import AugmentedFlowTB
            rows = self.eta * self.rnd.intrinsic_reward(batch.states).to(batch.log_rewards.dtype)
            info[AugmentedFlowTB.KEY] = rows
            b = rows[batch.last_rows] / self.eta
        else:
            b = self.bonus(batch).to(batch.log_rewards.dtype)
        self.rnd.update(batch.states)
        self.last_mean = float(b.mean())
        log_r = torch.logaddexp(batch.log_rewards, torch.log(self.eta * b))
        info["intrinsic_bonus"] = self.last_mean
        return batch.with_(log_rewards=log_r, info=info)


def add_flow_head(model) -> bool:
    """Give ``model`` a log F(s) head if it has none (a linear head on the shared trunk, else an
    MLP of the features); returns whether one was added."""
    from gfn.estimators import ScalarHead
    if model.flow is not None:
        return False
    if model.trunk is not None:
        head = nn.Linear([m for m in model.trunk.modules() if isinstance(m, nn.Linear)][-1].out_features, 1)
    else:  # an MLP as wide and deep as the model's own P_F network
        layers = [m for m in model.pf.modules() if isinstance(m, nn.Linear)]
        head = mlp(model.env.feature_dim + model.cond_dim, 1, layers[0].out_features, len(layers) - 1)
    model.flow = ScalarHead(head).to(next(model.parameters()).device)
    return True


def install_intrinsic(trainer, eta: float, mode: str = "edge", **rnd_kwargs) -> IntrinsicReward:
    """Add an RND :class:`IntrinsicReward` hook to ``trainer`` (before any reward tempering).

    ``mode="flow"`` needs plain TB: it swaps the objective for
    :class:`gfn.objectives.tb_variants.AugmentedFlowTB` and gives the model a log F head."""
    from gfn.objectives.tb import TrajectoryBalance
    from gfn.objectives.tb_variants import AugmentedFlowTB
    if mode == "flow" and type(trainer.objective) is not TrajectoryBalance:
        raise ValueError(f"--intrinsic rnd:eta,flow is GAFN's trajectory-balance form and needs the tb "
                         f"objective alone, got {trainer.objective!r}; use rnd:eta,edge or rnd:eta,state")
    hook = IntrinsicReward(RND(trainer.env, **rnd_kwargs).to(trainer.env.device), eta, mode)
    if mode == "flow":
        if add_flow_head(trainer.model):
            trainer.rebuild_optimizer()
        trainer.objective = AugmentedFlowTB(log_reward_floor=trainer.objective.log_reward_floor)
    trainer.batch_hooks.insert(0, hook)
    return hook


def parse_intrinsic(spec: str) -> Optional[tuple[float, str]]:
    """``"none"`` -> None; ``"rnd:eta"`` or ``"rnd:eta,edge|state|flow"`` -> (eta, mode)."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        return None
    name, _, args = spec.partition(":")
    if name != "rnd" or not args:
        raise ValueError(f"--intrinsic must be none or rnd:eta[,edge|state|flow], got {spec!r}")
    parts = args.split(",")
    try:
        eta = float(parts[0])
    except ValueError:
        raise ValueError(f"--intrinsic rnd:eta needs a number eta, got {spec!r}") from None
    mode = parts[1] if len(parts) > 1 else "edge"
    if not eta > 0 or mode not in MODES or len(parts) > 2:
        raise ValueError(f"--intrinsic rnd:eta[,edge|state|flow] needs eta > 0, got {spec!r}")
    return eta, mode
