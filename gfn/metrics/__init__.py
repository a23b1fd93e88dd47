"""Metrics, one module per family.  Names say what they compute; all logs are natural logs.

* :mod:`gfn.metrics.exact`: exact terminal distribution of an enumerable environment and the
  divergences to its target (``tv_exact``, ``jsd_exact``, ...).
* :mod:`gfn.metrics.continuous`: grid divergences, Wasserstein distances and density plots for
  continuous targets (needs numpy; POT and matplotlib for some functions).

The exact-metric names are re-exported here (``from gfn.metrics import exact_metrics``).
"""

from gfn.metrics.exact import (differentiable_terminal_distribution, empirical_distribution,
                               exact_metrics, exact_terminal_distribution, jsd, kl, log_partition,
                               modes_found, spearman, target_distribution, terminal_mask, tv)

__all__ = ["tv", "kl", "jsd", "empirical_distribution", "terminal_mask", "target_distribution",
           "log_partition", "exact_terminal_distribution", "differentiable_terminal_distribution",
           "modes_found", "spearman", "exact_metrics"]
