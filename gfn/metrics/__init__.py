"""Metrics, one module per family.  Names say what they compute; all logs are natural logs.

* :mod:`gfn.metrics.exact`: exact terminal distribution of an enumerable environment and the
  divergences to its target (``tv_exact``, ``jsd_exact``, ...).
* :mod:`gfn.metrics.estimated`: sampling-based estimates for any environment: importance-sampled
  ``log p_T(x)`` (:func:`~gfn.metrics.estimated.log_prob_estimate`), log Z bounds
  (``log_z_elbo``, ``log_z_iw``, ``log_z_eubo``), effective sample size, correlation of
  log p-hat with log R, and :class:`~gfn.metrics.estimated.EstimatedMetrics`, the metrics function
  the examples share.
* :mod:`gfn.metrics.continuous`: grid divergences, Wasserstein distances and density plots for
  continuous targets (needs numpy; POT and matplotlib for some functions).

The exact-metric names are re-exported here (``from gfn.metrics import exact_metrics``).
"""

from gfn.metrics.exact import (differentiable_terminal_distribution, empirical_distribution,
                               exact_metrics, exact_terminal_distribution, jsd, kl, log_partition,
                               modes_found, object_mask, reachable_mask, spearman, target_distribution,
                               terminal_mask, tv)

__all__ = ["tv", "kl", "jsd", "empirical_distribution", "terminal_mask", "target_distribution",
           "log_partition", "exact_terminal_distribution", "differentiable_terminal_distribution",
           "modes_found", "spearman", "exact_metrics", "reachable_mask", "object_mask"]
