"""The default optimiser keeps its steps small once the gradients have become small.

With plain Adam the second-moment estimate decays with the gradients near an optimum, so the step
per unit of gradient grows back (about 20x in the case below) and long runs leave the optimum
(issue 16: hypergrid tv 0.0008 at 1200 iterations, 0.045 at 1600).  The long runs themselves
are in benchmarks/long_run_stability.py; this checks the property that fixes them, on the
optimiser a default Trainer builds, with a fixed gradient schedule (no sampling noise).
"""

import torch

import gfn
from gfn.envs import HyperGrid
from gfn.objectives import get_objective


def _gain_after_gradients_shrink(config: gfn.TrainerConfig) -> tuple[float, float]:
    """Step per unit gradient (|delta w| / (lr |g|)) after 2000 steps at |g| = 1, and again after
    6000 more steps at |g| = 1e-3 (a converged run), for the network weights of a default model."""
    env = HyperGrid(2, 4)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=8)
    opt = gfn.Trainer(env, model, objective, config).optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    w = params[0]

    def run(n: int, scale: float) -> float:
        for p in params:  # the fused step leaves .grad as it is: set once per phase
            p.grad = torch.full_like(p, scale)
        for _ in range(n - 1):
            opt.step()
        before = w.detach().clone()
        opt.step()
        return float((w.detach() - before).abs().mean()) / (config.lr * scale)

    return run(2000, 1.0), run(6000, 1e-3)


def test_default_optimizer_does_not_grow_its_steps_when_gradients_shrink():
    gain_early, gain_late = _gain_after_gradients_shrink(gfn.TrainerConfig())
    # AMSGrad: bounded by its bias correction, sqrt((1 - 0.999**8000) / (1 - 0.999**2000)) = 1.08
    assert gain_late <= 1.25 * gain_early, (gain_early, gain_late)
    # plain Adam (the default before, still available) grows its steps back: the cause of issue 16
    adam_early, adam_late = _gain_after_gradients_shrink(gfn.TrainerConfig(amsgrad=False))
    assert adam_late > 10 * adam_early, (adam_early, adam_late)
