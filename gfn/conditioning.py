"""Temperature conditioning: one GFlowNet that samples from R(x)^beta for a range of beta.

Pieces (see ``docs/conditioning.md``):

* **beta distributions** (in :mod:`gfn.beta`, re-exported here: :class:`Uniform` [1, 3] by default, :class:`LogUniform`,
  :class:`ExpUniform`, :class:`NormalClipped`, :class:`Constant`, :class:`Annealed`), parsed from
  ``--beta-dist`` strings by :func:`parse_beta_dist`, drawn per trajectory by :class:`BetaSampler`
  (the trainer's ``cond_fn``).  ``batch.cond`` is ``[B, 1]`` and holds beta itself.
* **reward tempering** in one place: the batch hook :class:`RewardTempering` rewrites
  ``batch.log_rewards`` to ``beta * log R(x)`` after sampling (and after local search), so every
  objective that reads ``batch.log_rewards`` trains towards ``R^beta``.
* **Logit-GFN** (:class:`LogitGFlowNet`): the state encoder ignores beta; the policies'
  logits are scaled, ``P(.|s; beta) = softmax(clamp(g(beta) * f(s), -c, c))`` with a small
  positive scale network ``g`` (``beta * softplus(MLP(beta))``, ``g = beta`` at initialisation)
  for P_F and P_B.  ``g(beta)`` is one positive scale per action (``logit_scale="action"``, the default for fixed
  action sets; ``g(beta) * f(s)`` elementwise) or one scalar (``"scalar"``, the paper's form):
  still no beta in the encoder, but per action it can represent the tempered policies that one
  scale cannot (see ``docs/conditioning.md``).
* **layer conditioning** (:class:`LayerConditionedGFlowNet`): the baseline that feeds a learned
  beta embedding into the network input; ``logit+layer`` combines both.
* conditional ``log Z(beta)`` (:class:`ConditionalLogZ`, a small MLP) and conditional ``log F(s; beta)``.
* :func:`apply_run_flags`: the ``--condition``/``--beta-dist``/``--eval-betas``/``--local-search``
  wiring used by :func:`gfn.runner.run`.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from gfn.beta import (  # noqa: F401  (re-exported: part of this module's public API)
    ANNEAL_KINDS, Annealed, BetaDistribution, BetaSampler, Constant, ExpUniform, LogUniform, NormalClipped,
    Uniform, beta_of, parse_beta_dist, temper,
)
from gfn.distributions import MaskedCategorical
from gfn.estimators import DiscretePolicy, GFlowNet, LogZ, ScalarHead, UniformPolicy, mlp
from gfn.states import States, batch_len
from gfn.trajectories import TrajectoryBatch

CONDITION_MODES = ("none", "logit", "layer", "logit+layer")
#: ``g(beta)``: one scale per action, one positive scale for all logits, ``auto``: per action
#: where the policy has a fixed number of logits (``n_out``), else scalar; or ``paper``: the
#: authors' unconstrained scale network (MLP encoder/decoder, no output activation, clip +-20)
LOGIT_SCALES = ("auto", "action", "scalar", "paper")
#: where layer conditioning puts the beta embedding: at the network ``input`` (with the state
#: features), or at the ``scorer`` input as the paper builds it (after the state encoder: the
#: input of the last hidden layer of the shared trunk)
LAYER_EMBED_AT = ("input", "scorer")
#: the authors' logit clip (logit-gfn: clip_policy_logit_min/max)
PAPER_LOGIT_CLIP = 20.0


class RewardTempering:
    """Batch hook ``(trainer, batch) -> batch`` that rewrites ``batch.log_rewards`` to ``beta * log R``.

    This is the only place where rewards are tempered; it must run last among the batch
    hooks (after local search, which tempers its own acceptance test with :func:`temper`).
    The untempered values wait in ``batch.info["log_rewards_untempered"]``; :meth:`restore`,
    installed as the first trainer hook, puts them back after the optimiser step, so metric
    hooks and logs see the task's rewards while the objective saw the tempered ones.
    """

    KEY = "log_rewards_untempered"

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        if self.KEY in batch.info:
            raise RuntimeError("RewardTempering: this batch's rewards are already tempered (two tempering hooks?)")
        info = dict(batch.info)
        info[self.KEY] = batch.log_rewards
        return batch.with_(log_rewards=temper(batch.log_rewards, batch.cond), info=info)

    def restore(self, trainer, iteration: int, step_info) -> None:
        """Trainer hook: give ``step_info.batch`` its untempered log-rewards back."""
        batch = step_info.batch
        raw = batch.info.pop(self.KEY, None)
        if raw is not None:
            batch.log_rewards = raw


# ============================================================================ estimators
_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(x) = 1 at this x


class BetaScale(nn.Module):
    """g(beta) > 0 (``out_dim`` scales): ``beta * softplus(MLP(beta))``, or ``softplus(MLP(beta))``
    with ``proportional=False``; the softplus is exactly 1 at initialisation.

    Proportional is the default because tempering multiplies log-rewards by beta, so the exact
    tempered logits grow roughly linearly in beta and the network only learns the correction;
    started at 1 instead, the scales move too slowly at the policy's learning rate to follow it
    (measured on HyperGrid, ``benchmarks/logit_vs_layer.py`` and ``docs/conditioning.md``)."""

    def __init__(self, hidden: int = 32, out_dim: int = 1, proportional: bool = True):
        super().__init__()
        self.proportional = bool(proportional)
        self.net = mlp(1, out_dim, hidden=hidden, n_layers=1)
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.fill_(_SOFTPLUS_INV_1)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        """Scales ``[N, out_dim]`` for betas ``[N, 1]``."""
        g = nn.functional.softplus(self.net(beta))
        return beta * g if self.proportional else g


class PaperBetaScale(nn.Module):
    """The authors' scale network g(beta) (logit-gfn ``temp_encoder``/``temp_decoder``): an MLP
    encoder ``1 -> hidden`` and an MLP decoder ``hidden -> 1`` (``n_layers`` hidden layers each,
    LeakyReLU), default initialisation, *no* output activation: g can be any real number,
    including negative (which inverts the policy) — the library's :class:`BetaScale` keeps g > 0."""

    def __init__(self, hidden: int = 32, n_layers: int = 2):
        super().__init__()

        def net(d_in, d_out):
            layers, d = [], d_in
            for _ in range(n_layers):
                layers += [nn.Linear(d, hidden), nn.LeakyReLU()]
                d = hidden
            return nn.Sequential(*layers, nn.Linear(d, d_out))
        self.encoder, self.decoder = net(1, hidden), net(hidden, 1)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        """Scales ``[N, 1]`` for betas ``[N, 1]``."""
        return self.decoder(self.encoder(beta))


class LogitScaledPolicy(nn.Module):
    """Wraps a discrete policy: ``softmax(clamp(g(beta) * f(s), -clip, clip))`` over allowed actions.

    ``per_action=False``: ``g(beta)`` is one positive scalar (the paper's Logit-GFN).
    ``per_action=True``: ``g(beta)`` has one positive entry per action (``n_out`` of the base
    policy), multiplied elementwise into the logits; for a fixed action set this can represent
    tempered policies that a single scale cannot (a single scale only sharpens or flattens).
    Expects ``h`` whose last column is beta (as :class:`LogitGFlowNet.encode` makes it).
    A uniform policy is left uniform (scaling zeros changes nothing).
    """

    def __init__(self, base: nn.Module, hidden: int = 32, clip: float = 50.0, per_action: bool = False,
                 scale: Optional[nn.Module] = None):
        super().__init__()
        if not isinstance(base, (DiscretePolicy, UniformPolicy)) and not (hasattr(base, "logits") and hasattr(base, "mask")):
            raise TypeError(f"logit scaling needs a discrete policy with logits() and mask(), got {type(base).__name__}")
        if clip <= 0:
            raise ValueError(f"logit clip must be positive, got {clip}")
        n_out = 1
        if per_action and not isinstance(base, UniformPolicy):
            n_out = getattr(base, "n_out", None)
            if not isinstance(n_out, int) or n_out < 1:
                raise TypeError(f"per-action logit scales need a policy with a fixed number of logits (n_out); "
                                f"{type(base).__name__} has none: use logit_scale='scalar'")
        self.base = base
        self.clip = float(clip)
        if isinstance(base, UniformPolicy):
            self.scale = None
        else:  # ``scale``: another g(beta) network, e.g. :class:`PaperBetaScale`
            self.scale = scale if scale is not None else BetaScale(hidden, out_dim=n_out)

    def forward(self, h: torch.Tensor, states: States) -> MaskedCategorical:
        """Scaled action distribution at ``states``."""
        if self.scale is None:
            return self.base(h, states)
        feat, beta = h[:, :-1], h[:, -1:]
        logits = self.base.logits(feat, states) * self.scale(beta)
        return MaskedCategorical(logits.clamp(-self.clip, self.clip), self.base.mask(states))


class ConditionalLogZ(LogZ):
    """log Z(beta): a small MLP of the conditioning vector; ``default_beta`` is used when no
    conditioning is given (``value`` is log Z at that beta, for code written for scalar log Z)."""

    def __init__(self, init: float = 0.0, cond_dim: int = 1, hidden: int = 64, default_beta: Optional[float] = 1.0):
        super().__init__(init=init, cond_dim=cond_dim, hidden=hidden)
        self.default_beta = default_beta

    def forward(self, n: int, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Z for ``n`` trajectories (at ``default_beta`` when ``cond`` is None)."""
        if cond is None:
            cond = _default_cond(self.default_beta, n, self.net[0].weight.device, self.net[0].weight.dtype)
        return super().forward(n, cond)

    @property
    def value(self) -> torch.Tensor:
        """log Z at ``default_beta`` (a 0-d tensor)."""
        return self.forward(1)[0]


def _default_cond(default_beta: Optional[float], n: int, device, dtype=torch.float32) -> torch.Tensor:
    if default_beta is None:
        raise ValueError("this GFlowNet is temperature-conditional: pass a conditioning tensor [n, 1] of betas")
    return torch.full((n, 1), float(default_beta), device=device, dtype=dtype)


class LogitGFlowNet(GFlowNet):
    """Logit-GFN: an unconditional encoder; beta enters only through the logit scales of P_F and
    P_B, the conditional state flow log F(s; beta) and log Z(beta).

    ``encode`` returns the trunk output with beta appended as the last column, so heads and
    the batched :meth:`GFlowNet.evaluate` work unchanged.
    """

    def __init__(self, env, pf: LogitScaledPolicy, pb: nn.Module, trunk: Optional[nn.Module] = None,
                 flow: Optional[nn.Module] = None, log_z: Optional[LogZ] = None, default_beta: Optional[float] = 1.0,
                 beta_embed: Optional[nn.Module] = None):
        super().__init__(env, pf, pb, trunk=trunk, flow=flow,
                         log_z=log_z if log_z is not None else ConditionalLogZ(default_beta=default_beta), cond_dim=1)
        self.default_beta = default_beta
        self.beta_embed = beta_embed  # "logit+layer": the encoder sees beta too

    def encode(self, states: States, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[trunk(features(s)), beta]`` (``trunk([features(s), embed(beta)])`` with a beta embedding)."""
        x = self.env.featurize(states)
        if cond is None:
            cond = _default_cond(self.default_beta, batch_len(states), x.device, x.dtype)
        beta = cond[:, :1].to(x.dtype)
        if self.beta_embed is not None:
            x = torch.cat([x, self.beta_embed(beta)], dim=-1)
        h = self.trunk(x) if self.trunk is not None else x
        return torch.cat([h, beta.to(h.dtype)], dim=-1)


class LayerConditionedGFlowNet(GFlowNet):
    """Layer-conditioning baseline: a learned beta embedding is concatenated to the state
    features before the (shared or per-head) networks (``embed_at="input"``), or, as the paper
    builds it (``embed_at="scorer"``), to the state encoding: the trunk's layers before
    ``split`` encode the state and the layers from ``split`` on score ``[encoding, embed(beta)]``."""

    def __init__(self, env, pf: nn.Module, pb: nn.Module, beta_embed: nn.Module, trunk: Optional[nn.Module] = None,
                 flow: Optional[nn.Module] = None, log_z: Optional[LogZ] = None, default_beta: Optional[float] = 1.0,
                 embed_at: str = "input", split: int = 0):
        super().__init__(env, pf, pb, trunk=trunk, flow=flow,
                         log_z=log_z if log_z is not None else ConditionalLogZ(default_beta=default_beta), cond_dim=1)
        if embed_at not in LAYER_EMBED_AT:
            raise ValueError(f"embed_at must be one of {LAYER_EMBED_AT}, got {embed_at!r}")
        if embed_at == "scorer" and (trunk is None or not 0 < split < len(trunk)):
            raise ValueError("layer conditioning at the scorer input needs a shared trunk split into encoder and scorer")
        self.beta_embed = beta_embed
        self.default_beta = default_beta
        self.embed_at, self.split = embed_at, int(split)

    def encode(self, states: States, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``trunk([features(s), embed(beta)])``, or ``scorer([encoder(features(s)), embed(beta)])``."""
        x = self.env.featurize(states)
        if cond is None:
            cond = _default_cond(self.default_beta, batch_len(states), x.device, x.dtype)
        e = self.beta_embed(cond[:, :1].to(x.dtype))
        if self.embed_at == "input":
            x = torch.cat([x, e], dim=-1)
            return self.trunk(x) if self.trunk is not None else x
        layers = list(self.trunk)
        for layer in layers[:self.split]:
            x = layer(x)
        x = torch.cat([x, e], dim=-1)
        for layer in layers[self.split:]:
            x = layer(x)
        return x


def _require_standard_encoder(model: GFlowNet, mode: str) -> None:
    if type(model).encode is not GFlowNet.encode:
        raise TypeError(f"--condition {mode} rebuilds the model around the standard encoder "
                        f"(env.featurize + optional trunk); {type(model).__name__} overrides encode()")


def make_logit_gflownet(base: GFlowNet, scale_hidden: int = 32, clip: float = 50.0, flow_hidden: int = 64,
                        default_beta: Optional[float] = 1.0, layer_embed_dim: int = 0,
                        logit_scale: str = "auto") -> LogitGFlowNet:
    """Logit-GFN from an *unconditional* model: its encoder and heads are reused; P_F/P_B get
    logit scales (``logit_scale``: one ``"scalar"``, one per ``"action"``, or ``"paper"``: the
    authors' unconstrained :class:`PaperBetaScale` with logits clipped to +-20), the flow head (if any)
    becomes an MLP of ``[h, beta]``, log Z becomes log Z(beta).
    ``layer_embed_dim > 0`` also feeds a beta embedding to the encoder ("logit+layer")."""
    _require_standard_encoder(base, "logit")
    if logit_scale not in LOGIT_SCALES:
        raise ValueError(f"logit_scale must be one of {LOGIT_SCALES}, got {logit_scale!r}")
    per_action = logit_scale == "action" or (logit_scale == "auto" and isinstance(getattr(base.pf, "n_out", None), int))
    paper = logit_scale == "paper"
    if paper:  # the authors' unconstrained scale network and logit clip
        clip = PAPER_LOGIT_CLIP
    if base.cond_dim != 0:
        raise ValueError("make_logit_gflownet expects an unconditional base model (cond_dim=0)")
    flow = None
    if base.flow is not None:
        with torch.no_grad():
            h_dim = base.encode(base.env.initial_states(1)).shape[-1]
        if layer_embed_dim > 0 and base.trunk is None:  # no trunk: the heads see [features, embed(beta)]
            h_dim += layer_embed_dim
        flow = ScalarHead(mlp(h_dim + 1, 1, hidden=flow_hidden, n_layers=1))
    embed = None
    if layer_embed_dim > 0:
        _widen_model_inputs(base, layer_embed_dim)
        embed = BetaEmbedding(layer_embed_dim)
    def scaled(policy):
        return LogitScaledPolicy(policy, scale_hidden, clip, per_action,
                                 scale=PaperBetaScale(scale_hidden) if paper else None)
    model = LogitGFlowNet(base.env, scaled(base.pf), scaled(base.pb), trunk=base.trunk, flow=flow,
                          log_z=ConditionalLogZ(default_beta=default_beta), default_beta=default_beta, beta_embed=embed)
    return model.to(next(base.parameters()).device)


class BetaEmbedding(nn.Module):
    """Learned embedding of beta for layer conditioning: ``[N, 1] -> [N, dim]`` (an MLP with
    ``n_layers`` hidden layers; the authors' ``temp_encoder`` has two)."""

    def __init__(self, dim: int = 32, hidden: int = 32, n_layers: int = 1):
        super().__init__()
        self.dim = dim
        self.net = mlp(1, dim, hidden=hidden, n_layers=n_layers)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        """Embedding of each beta."""
        return self.net(beta)


def _widen_input(module: nn.Module, extra: int, index: int = 0) -> None:
    """Give the ``nn.Linear`` at ``index`` of an MLP (``nn.Sequential``) ``extra`` more inputs, in
    place; the existing weights are kept and the new columns get a fresh layer's initialisation."""
    if not (isinstance(module, nn.Sequential) and len(module) > index and isinstance(module[index], nn.Linear)):
        raise TypeError(f"layer conditioning appends the beta embedding to an MLP input layer; "
                        f"{type(module).__name__} has no nn.Linear at position {index} (build the model with "
                        f"cond_dim and pass it conditioned instead)")
    old = module[index]
    new = nn.Linear(old.in_features + extra, old.out_features, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight[:, :old.in_features] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    module[index] = new


def _widen_model_inputs(base: GFlowNet, extra: int) -> None:
    """Widen the input layer of the trunk, or of every head when there is no trunk."""
    if base.trunk is not None:
        _widen_input(base.trunk, extra)
        return
    for head in (getattr(base.pf, "head", None), getattr(base.pb, "head", None), getattr(base.flow, "module", None)):
        if head is not None:
            _widen_input(head, extra)


def make_layer_gflownet(base: GFlowNet, embed_dim: int = 32, default_beta: Optional[float] = 1.0,
                        embed_at: str = "input") -> LayerConditionedGFlowNet:
    """Layer-conditioned model from an *unconditional* MLP model: the input layer of the trunk
    (or of each head without a trunk) is widened by ``embed_dim`` for the beta embedding; with
    ``embed_at="scorer"`` (the paper's layout) the trunk's *last* linear layer is widened instead,
    so the layers before it encode the state alone, and the embedding is the authors' two-layer MLP."""
    _require_standard_encoder(base, "layer")
    if base.cond_dim != 0:
        raise ValueError("make_layer_gflownet expects an unconditional base model (cond_dim=0)")
    if embed_at not in LAYER_EMBED_AT:
        raise ValueError(f"layer embedding position must be one of {LAYER_EMBED_AT}, got {embed_at!r}")
    device = next(base.parameters()).device
    split = 0
    if embed_at == "scorer":
        linears = [i for i, m in enumerate(base.trunk or []) if isinstance(m, nn.Linear)]
        if len(linears) < 2:
            raise ValueError("--layer-embed-at scorer needs a shared trunk with at least two hidden layers "
                             "(the first ones encode the state, the last one scores [encoding, embed(beta)])")
        split = linears[-1]
        _widen_input(base.trunk, embed_dim, index=split)
        embed = BetaEmbedding(embed_dim, hidden=embed_dim, n_layers=2)
    else:
        _widen_model_inputs(base, embed_dim)
        embed = BetaEmbedding(embed_dim)
    return LayerConditionedGFlowNet(base.env, base.pf, base.pb, embed.to(device), trunk=base.trunk,
                                    flow=base.flow, log_z=ConditionalLogZ(default_beta=default_beta).to(device),
                                    default_beta=default_beta, embed_at=embed_at, split=split)


def make_conditional(model: GFlowNet, mode: str, embed_dim: int = 32, scale_hidden: int = 32,
                     logit_clip: float = 50.0, default_beta: Optional[float] = 1.0,
                     logit_scale: str = "auto", layer_embed_at: str = "input") -> GFlowNet:
    """Turn an unconditional model into a temperature-conditional one (``logit``, ``layer`` or
    ``logit+layer``), reusing its networks (``layer_embed_at``: see :data:`LAYER_EMBED_AT`)."""
    if mode in ("logit", "logit+layer"):
        return make_logit_gflownet(model, scale_hidden=scale_hidden, clip=logit_clip, default_beta=default_beta,
                                   layer_embed_dim=embed_dim if mode == "logit+layer" else 0,
                                   logit_scale=logit_scale)
    if mode == "layer":
        return make_layer_gflownet(model, embed_dim=embed_dim, default_beta=default_beta, embed_at=layer_embed_at)
    raise ValueError(f"unknown conditioning mode {mode!r}; choose one of {CONDITION_MODES[1:]}")


def build_conditional_model(mode: str, objective, env, embed_dim: int = 32, scale_hidden: int = 32,
                            logit_clip: float = 50.0, default_beta: Optional[float] = 1.0,
                            logit_scale: str = "auto", layer_embed_at: str = "input", **build_kw) -> GFlowNet:
    """The objective's default model for ``env`` made temperature-conditional (``logit`` or ``layer``).

    ``build_kw`` go to ``objective.build_model`` (hidden, n_layers, shared_trunk, uniform_pb).
    """
    check_objective_supports_tempering(objective)
    build_kw.pop("cond_dim", None)
    base = objective.build_model(env, **build_kw)
    return make_conditional(base, mode, embed_dim=embed_dim, scale_hidden=scale_hidden, logit_clip=logit_clip,
                            default_beta=default_beta, logit_scale=logit_scale, layer_embed_at=layer_embed_at)


#: objectives that read log R of states from the environment themselves (so the tempering of
#: ``batch.log_rewards`` would not reach them): refused under temperature conditioning
_READS_ENV_REWARDS = {"fldb": "forward-looking DB uses log R of intermediate states",
                      "flsubtb": "forward-looking SubTB uses log R of intermediate states",
                      "modified_db": "modified DB uses log R of every state"}


def check_objective_supports_tempering(objective, dist: Optional[BetaDistribution] = None) -> None:
    """Raise if ``objective`` cannot be temperature-conditioned: it takes rewards from the
    environment instead of ``batch.log_rewards``, has no conditional model, or (vargrad) needs
    several trajectories per beta value while ``dist`` draws a different beta for each."""
    name = getattr(objective, "name", "")
    why = _READS_ENV_REWARDS.get(name)
    if why is None and name == "fm" and getattr(objective, "reward_matching", "terminal") != "terminal":
        why = "flow matching with reward_matching on every state reads log R from the environment"
    if why is not None:
        raise ValueError(f"temperature conditioning tempers batch.log_rewards, but {why}; "
                         f"use tb, db, subtb, maxent (or fm with reward_matching=terminal) with --condition")
    if name == "qm":
        raise ValueError("temperature conditioning is not available for qm (its quantile model has its own heads)")
    if name == "vargrad" and dist is not None and not isinstance(dist, (Constant, Annealed)):
        raise ValueError(f"vargrad estimates log Z per distinct beta; {dist!r} gives every trajectory its own beta "
                         f"(use constant:b or anneal:..., or another objective)")


# ============================================================================ metrics and wiring
def beta_tag(beta: float) -> str:
    """Metric-name suffix of a beta: ``1 -> 'beta1'``, ``2.5 -> 'beta2.5'``."""
    return f"beta{float(beta):g}"


@torch.no_grad()
def exact_beta_metrics(env, model: GFlowNet, betas, log_z: bool = True) -> dict:
    """``tv_exact_beta<b>`` = tv(p_T(.|beta), R^beta / Z_beta) for each beta (enumerable envs);
    also ``log_z_error_beta<b>`` when ``log_z`` and the model has a conditional log Z."""
    from gfn import metrics
    out = {}
    if not betas or not getattr(env, "is_enumerable", False):
        return out
    device = getattr(env, "device", torch.device("cpu"))
    for b in betas:
        cond = torch.tensor([float(b)], device=device)
        p = metrics.exact_terminal_distribution(env, model, cond=cond if model.cond_dim > 0 else None)
        q = metrics.target_distribution(env, tempering=float(b))
        out[f"tv_exact_{beta_tag(b)}"] = metrics.tv(p, q)
        if log_z and isinstance(model.log_z, ConditionalLogZ):
            lz = float(model.log_z(1, cond.reshape(1, 1).to(next(model.log_z.parameters()).dtype))[0])
            out[f"log_z_error_{beta_tag(b)}"] = abs(lz - metrics.log_partition(env, tempering=float(b)))
    return out


def parse_betas(spec) -> list[float]:
    """``"1,2,3"`` or ``[1, 2, 3]`` -> ``[1.0, 2.0, 3.0]`` (each > 0)."""
    if spec is None or spec == "":
        return []
    items = [p for p in spec.replace(" ", "").split(",") if p] if isinstance(spec, str) else list(spec)
    try:
        betas = [float(b) for b in items]
    except (TypeError, ValueError):
        raise ValueError(f"--eval-betas expects comma-separated numbers, got {spec!r}") from None
    if any(not (b > 0 and math.isfinite(b)) for b in betas):
        raise ValueError(f"--eval-betas must be finite and > 0, got {spec!r}")
    return betas


class RunExtensions:
    """What ``--condition``, ``--beta-dist``, ``--eval-betas`` and ``--local-search`` installed on a
    trainer (see :func:`apply_run_flags`); :meth:`metrics` adds their numbers to the run's metrics."""

    def __init__(self, mode: str = "none", sampler: Optional[BetaSampler] = None, local_search=None,
                 eval_betas: Optional[list] = None):
        self.mode, self.sampler, self.local_search = mode, sampler, local_search
        self.eval_betas = list(eval_betas or [])

    @property
    def active(self) -> bool:
        """Whether anything adds metrics."""
        return bool(self.eval_betas) or self.local_search is not None

    def metrics(self, trainer) -> dict:
        """``tv_exact_beta<b>`` (enumerable envs) and ``ls_acceptance_rate`` (all proposals so far)."""
        learns_log_z = getattr(trainer.objective, "needs_log_z", True)
        out = exact_beta_metrics(trainer.env, trainer.model, self.eval_betas, log_z=learns_log_z) if self.eval_betas else {}
        if self.local_search is not None:
            out["ls_acceptance_rate"] = self.local_search.acceptance_rate
            out["ls_reward_calls"] = self.local_search.n_reward_calls
        return out


def apply_run_flags(cfg, trainer) -> RunExtensions:
    """Install the conditioning and local-search flags of a :class:`gfn.config.RunConfig` on a trainer.

    ``--condition logit|layer``: an unconditional ``trainer.model`` is converted in place of the
    trainer's model (networks reused; the sampler follows and the optimiser is rebuilt), beta is
    drawn per trajectory from ``--beta-dist`` (``trainer.cond_fn``, unless one is set) and the
    rewards are tempered by the last batch hook.  ``--local-search K,I`` puts a
    :class:`gfn.local_search.LocalSearch` hook first, or, with ``--local-search-protocol paper``,
    makes :class:`gfn.local_search.PaperRounds` the trainer's batch source (with a
    reward-prioritised replay buffer).  Call it before restoring a checkpoint.
    """
    from gfn.local_search import local_search_from_config, paper_rounds_from_config
    from gfn.replay import RewardPrioritizedReplay
    from gfn.trainer import make_optimizer
    mode = (getattr(cfg, "condition", "none") or "none").lower()
    if mode not in CONDITION_MODES:
        raise ValueError(f"--condition must be one of {CONDITION_MODES}, got {mode!r}")
    betas = parse_betas(getattr(cfg, "eval_betas", None))
    if mode == "none" and any(b != 1.0 for b in betas) and trainer.model.cond_dim == 0:
        warnings.warn(f"--eval-betas {','.join(f'{b:g}' for b in betas)} with --condition none: the unconditional "
                      "model (trained on R) is compared with R^beta / Z_beta, so tv_exact_beta<b> for beta != 1 "
                      "measures how far R is from R^beta, not a conditional model; pass --condition logit|layer "
                      "to train one", UserWarning, stacklevel=2)
    sampler = None
    if mode != "none":
        dist = parse_beta_dist(getattr(cfg, "beta_dist", "uniform:1,3") or "uniform:1,3")
        check_objective_supports_tempering(trainer.objective, dist)
        if trainer.model.cond_dim == 0:
            model = make_conditional(trainer.model, mode, default_beta=1.0,
                                     logit_scale=getattr(cfg, "logit_scale", "auto") or "auto",
                                     layer_embed_at=getattr(cfg, "layer_embed_at", "input") or "input")
            trainer.model = model
            trainer.sampler.model = model
            c = trainer.config
            lr_log_z = float(getattr(cfg, "lr_log_z_cond", 0.0) or 0.0) or c.lr_log_z  # log Z(beta) is an MLP
            trainer.optimizer = make_optimizer(model, c.lr, lr_log_z, c.weight_decay, c.amsgrad)
        if trainer.cond_fn is None:
            sampler = BetaSampler(dist, device=getattr(cfg, "device", "cpu")).bind(trainer)
            trainer.cond_fn = sampler
        elif isinstance(trainer.cond_fn, BetaSampler):  # the caller's sampler: schedules follow the trainer
            sampler = trainer.cond_fn if trainer.cond_fn.bound else trainer.cond_fn.bind(trainer)
        if not any(isinstance(h, RewardTempering) for h in trainer.batch_hooks):  # temper exactly once
            tempering = RewardTempering()
            trainer.batch_hooks.append(tempering)
            trainer.hooks.insert(0, tempering.restore)
    ls = local_search_from_config(cfg, tempered=mode != "none")
    rounds = paper_rounds_from_config(cfg, ls)
    if rounds is not None:  # --local-search-protocol paper: the rounds sample, search and replay
        if trainer.replay is None:
            capacity = int(getattr(cfg, "replay_capacity", 0) or 0) or 1_000_000
            trainer.replay = RewardPrioritizedReplay(capacity)
        elif not isinstance(trainer.replay, RewardPrioritizedReplay):
            raise ValueError("--local-search-protocol paper replays with the reward-prioritised buffer: "
                             "use --replay-policy prioritized (or no --replay-capacity)")
        trainer.batch_source = rounds
    elif ls is not None:
        trainer.batch_hooks.insert(0, ls)
    return RunExtensions(mode, sampler, ls, betas)
