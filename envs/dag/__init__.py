"""Bayesian structure learning with GFlowNets (DAG-GFlowNet, Deleu et al. 2022).

``DAGEnv`` grows a DAG one edge at a time under acyclicity masks kept by an incrementally
updated transitive closure; its reward is a modular prior times a decomposable marginal
likelihood (BGe or linear-Gaussian).  ``gfn.envs.dag.metrics`` holds the evaluation (exact
posterior distances for d <= 5, expected SHD, edge-marginal ROC-AUC, held-out log-likelihood).
"""

from gfn.envs.dag.data import LinearGaussianNetwork, erdos_renyi_dag, random_linear_gaussian
from gfn.envs.dag.env import DAGEnv, DAGReward, transitive_closure
from gfn.envs.dag.exact import edge_marginals, enumerate_dags, exact_posterior
from gfn.envs.dag.scores import (BGeScore, EdgePrior, ErdosRenyiPrior, LinearGaussianScore, UniformPrior,
                                 make_prior, make_score)

__all__ = ["DAGEnv", "DAGReward", "transitive_closure", "LinearGaussianNetwork", "erdos_renyi_dag",
           "random_linear_gaussian", "enumerate_dags", "exact_posterior", "edge_marginals", "BGeScore",
           "LinearGaussianScore", "UniformPrior", "ErdosRenyiPrior", "EdgePrior", "make_score", "make_prior"]
