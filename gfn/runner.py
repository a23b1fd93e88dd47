"""``run``: the one function every example calls to train and evaluate a GFlowNet.

It seeds everything, builds the objective and model from the config, runs the generic
:class:`~gfn.trainer.Trainer` with a progress bar and TensorBoard logging, evaluates
``metrics_fn`` periodically and at the end, and writes ``metrics.json`` and ``config.json``
into the run directory.  Nothing is written before the run is accepted (configuration, output
directory and resumed checkpoint checked); the run directory is locked while the run writes.
A non-finite loss or parameters stop it with :class:`~gfn.trainer.TrainingDiverged`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Callable, Iterable, Optional

import torch

from gfn import distributed
from gfn.conditioning import apply_run_flags
from gfn.exploration import apply_exploration_flags
from gfn.preference_flags import apply_preference_flags
from gfn.preferences import PREF_MODES
from gfn.checkpoint import atomic_write_text
from gfn.config import RunConfig, check_config, check_objective
from gfn.rundir import check_output_dir
from gfn.run_logging import RunLogger
from gfn.session import RunSession, exit_code
from gfn.trainer import Trainer, TrainerConfig, TrainingDiverged
from gfn.utils import seed_everything

MetricsFn = Callable[[Trainer], dict]


def default_run_dir(name: str) -> str:
    """``runs/<name>-<timestamp>``."""
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def trainer_config(cfg: RunConfig) -> TrainerConfig:
    """The :class:`TrainerConfig` part of a run configuration."""
    return TrainerConfig(batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                         grad_clip=cfg.grad_clip if cfg.grad_clip and cfg.grad_clip > 0 else None,
                         temperature=cfg.temperature, epsilon=cfg.epsilon,
                         replay_capacity=cfg.replay_capacity, replay_fraction=cfg.replay_fraction,
                         replay_policy=cfg.replay_policy, replay_extra=getattr(cfg, "replay_extra", False),
                         amsgrad=getattr(cfg, "amsgrad", True))


def build_objective_and_model(cfg: RunConfig, env, cond_dim: int = 0):
    """Objective from the registry and its default model for ``env``."""
    from gfn.objectives import get_objective
    objective = get_objective(cfg.objective, **dict(cfg.objective_args))
    model = objective.build_model(env, hidden=cfg.hidden, n_layers=cfg.n_layers,
                                  shared_trunk=cfg.shared_trunk, uniform_pb=cfg.uniform_pb, cond_dim=cond_dim)
    return objective, model.to(cfg.device)


def log_z_value(model, objective=None) -> float:
    """Current estimate of log Z: the objective's own ``log_z_estimate`` when it has one (FM, QM,
    FL, modified DB), the learned scalar for objectives that learn it (TB), else log F(s_0) from
    the flow head (DB, SubTB); NaN when none applies.  Conditional models are read at their
    default condition."""
    with torch.no_grad():
        if objective is not None and hasattr(objective, "log_z_estimate"):
            return float(objective.log_z_estimate(model))
        learns_log_z = objective is None or getattr(objective, "needs_log_z", True)
        v = getattr(model.log_z, "value", None)
        if learns_log_z and v is not None:
            return float(v.detach())
        if getattr(model, "flow", None) is not None:
            try:
                return float(model.log_flow(model.env.initial_states(1))[0])
            except (ValueError, TypeError):  # a conditional model that needs its condition
                return float("nan")
        return float(v.detach()) if v is not None else float("nan")


def run(cfg: RunConfig, env, metrics_fn: Optional[MetricsFn] = None, *, model=None, objective=None,
        hooks: Iterable = (), batch_hooks: Iterable = (), cond_fn=None,
        images_fn: Optional[Callable[[Trainer], dict]] = None, name: str = "run",
        trainer: Optional[Trainer] = None) -> dict:
    """Train ``env`` as configured by ``cfg``; returns the final metrics (also in metrics.json)."""
    # nothing is written until the run is accepted: configuration, objective, output directory
    # and (when resuming) the whole checkpoint are checked first
    check_config(cfg)  # fields may have been changed since the config was built
    out = cfg.out or default_run_dir(name)
    cfg.out = out
    if objective is None and trainer is None:
        check_objective(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        check_output_dir(out, resume=bool(getattr(cfg, "resume", "")), overwrite=getattr(cfg, "overwrite", False))
    session = RunSession(cfg)  # joins the torchrun process group; reads the --resume checkpoint
    try:
        seed_everything(cfg.seed)
        if trainer is None:
            if objective is None or model is None:
                obj2, model2 = build_objective_and_model(cfg, env)
                objective = objective or obj2
                model = model or model2
            trainer = Trainer(env, model, objective, trainer_config(cfg), cond_fn=cond_fn,
                              batch_hooks=list(batch_hooks), hooks=list(hooks))
        if getattr(cfg, "condition", "none") in PREF_MODES:  # vector rewards: preference conditioning
            extensions = apply_preference_flags(cfg, trainer)
        else:
            extensions = apply_run_flags(cfg, trainer)  # --condition, --beta-dist, --eval-betas, --local-search
        apply_exploration_flags(cfg, trainer)  # --exploration thompson:K, --intrinsic rnd:eta
        session.attach(trainer)  # data-parallel wiring; validates and restores the checkpoint when resuming
        session.open_run_dir()  # accepted: lock the directory (clear it on --overwrite)
    except BaseException:
        session.close()
        raise
    if session.is_main:
        atomic_write_text(os.path.join(out, "config.json"), json.dumps(session.config_dict(), indent=2))
    model = trainer.model
    logger = RunLogger(out, enabled=session.is_main, purge_step=session.purge_step)
    logger.text(f"config: {json.dumps(session.config_dict())}")
    if session.resumed:
        logger.text(f"resumed from {session.resume_path} at iteration {trainer.iteration}")
    if session.dist.enabled:
        logger.text(f"distributed: {session.dist.world_size} ranks ({session.dist.backend}), "
                    f"{cfg.batch_size} trajectories per rank per iteration")
    n_params = sum(p.numel() for p in model.parameters())
    logger.text(f"model parameters: {n_params}")

    def evaluate(step: int) -> dict:
        if metrics_fn is None and not extensions.active:
            return {}
        model.eval()
        with torch.no_grad(), session.isolated_rng():  # evaluation never moves the training RNG
            m = dict(metrics_fn(trainer)) if metrics_fn is not None else {}
            m.update(extensions.metrics(trainer))  # tv_exact_beta<b>, ls_acceptance_rate
        model.train()
        m = session.reduce(m)  # averaged over ranks
        logger.scalars(m, step, prefix="eval/")
        if images_fn is not None and session.is_main:
            with torch.no_grad(), session.isolated_rng():
                images = images_fn(trainer)
            for tag, img in images.items():
                logger.image(tag, img, step)
        return m

    bar = None
    if cfg.progress and session.is_main:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.iterations, initial=trainer.iteration, desc=name, dynamic_ncols=True, mininterval=1.0)
    t_start = time.perf_counter()
    wall_before = float(session.runner_state.get("wall_s", 0.0))  # earlier sessions of a resumed run
    loss = float(session.runner_state.get("loss", float("nan")))
    window: list[float] = []

    def runner_state() -> dict:
        return {"wall_s": wall_before + time.perf_counter() - t_start, "loss": loss,
                "logger_step": trainer.iteration}

    stopped = False
    session.watch_signals()  # SIGTERM / first Ctrl-C: finish the iteration, checkpoint, exit
    try:
        while trainer.iteration < cfg.iterations:
            t0 = time.perf_counter()
            info = trainer.train_step()
            dt = time.perf_counter() - t0
            loss = info.loss
            window.append(dt)
            it = trainer.iteration
            if cfg.log_every > 0 and it % cfg.log_every == 0:
                ms = 1000.0 * sum(window) / len(window)
                window.clear()
                scalars = {"loss": loss, "log_z": log_z_value(model, trainer.objective), "ms_per_iter": ms,
                           "mean_log_reward": float(info.batch.log_rewards.float().mean()),
                           "mean_length": info.batch.n_rows / max(info.batch.batch_size, 1)}
                scalars.update({k: v for k, v in info.batch.info.items() if isinstance(v, (int, float))})
                scalars = session.reduce(scalars)  # averaged over ranks
                logger.scalars(scalars, it, prefix="train/")
                if bar is not None:
                    bar.set_postfix(loss=f"{scalars['loss']:.4f}", log_z=f"{scalars['log_z']:.3f}", ms=f"{ms:.1f}")
            if cfg.eval_every > 0 and it % cfg.eval_every == 0 and it < cfg.iterations:
                evaluate(it)
            if session.checkpoint_due(it):
                session.save(trainer, runner_state())
            if bar is not None:
                bar.update(1)
            if session.stop_requested():
                stopped = True
                break
        # the final checkpoint comes before the final evaluation, so a killed evaluation loses nothing
        if trainer.iteration != session.last_saved:
            path = session.save(trainer, runner_state())
            logger.text(f"checkpoint: {path}")
    except TrainingDiverged as e:
        last = f"; the last checkpoint is at iteration {session.last_saved}" if session.last_saved >= 0 else ""
        e.args = (f"{e.args[0]}{last}",)
        logger.text(f"error: {e} ({e.hint})")
        logger.close()
        session.close()
        raise
    except BaseException:
        logger.close()
        session.close()  # put the signal handlers back before the error propagates
        raise
    finally:
        if bar is not None:
            bar.close()
    session.stop.restore()
    wall = runner_state()["wall_s"]
    final = {"iterations": trainer.iteration, "wall_s": wall,
             "ms_per_iter": 1000.0 * wall / max(trainer.iteration, 1),
             "loss": session.reduce({"loss": loss})["loss"], "log_z": log_z_value(model, trainer.objective),
             "n_samples": int(distributed.reduce_sum(session.dist, trainer.n_samples)),
             "n_parameters": n_params}
    if session.dist.enabled:
        final.update(world_size=session.dist.world_size,
                     ranks_in_sync=int(distributed.params_in_sync(session.dist, model)))
    if stopped:
        signum = session.stop.signum or signal.SIGTERM
        final["interrupted"] = True
        logger.text(f"stopped by signal {signum} at iteration {trainer.iteration}; "
                    f"continue with --resume {out}")
    else:
        final.update(evaluate(trainer.iteration))
    logger.scalars(final, trainer.iteration, prefix="final/")
    logger.close()
    if session.is_main:
        atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(_jsonable(final), indent=2))
    session.close(barrier=True)
    if stopped:
        raise SystemExit(exit_code(signum))
    return final


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if torch.is_tensor(v):
            v = v.item() if v.numel() == 1 else v.tolist()
        if isinstance(v, float) and v != v:
            v = None  # NaN is not valid JSON
        out[k] = v
    return out
