"""Multi-objective tasks (vector rewards, see :mod:`gfn.preferences`): Branin-Currin on a grid,
multi-TF TFBind8, N-grams and molecules with QED / SA / MW."""

from gfn.envs.multiobjective.branin_currin import BraninCurrin, BraninCurrinReward, branin, currin
from gfn.envs.multiobjective.molecules_moo import MoleculeMOReward  # RDKit is imported only to score
from gfn.envs.multiobjective.ngrams import NGramReward, NGrams
from gfn.envs.multiobjective.tfbind8_multi import TRANSCRIPTION_FACTORS, TFBind8Multi, TFMultiReward, load_tf_escores

__all__ = ["BraninCurrin", "BraninCurrinReward", "branin", "currin", "NGrams", "NGramReward", "TFBind8Multi",
           "TFMultiReward", "TRANSCRIPTION_FACTORS", "load_tf_escores", "MoleculeMOReward"]

