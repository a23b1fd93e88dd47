"""Phylogenetic trees (PhyloGFN): the forest-merge environment, its rewards, policies and metrics."""

from gfn.envs.phylo.data import PARSIMONY_C, PHYLOGFN_MLL, Alignment, load_alignment, read_fasta
from gfn.envs.phylo.continuous import PhyloTreeContinuous
from gfn.envs.phylo.env import PhyloTree, exponential_bins, jc69
from gfn.envs.phylo.forest import Forest
from gfn.envs.phylo.rewards import LikelihoodReward, ParsimonyReward

__all__ = ["PhyloTree", "PhyloTreeContinuous", "Forest", "ParsimonyReward", "LikelihoodReward", "Alignment", "load_alignment",
           "read_fasta", "jc69", "exponential_bins", "PARSIMONY_C", "PHYLOGFN_MLL"]
