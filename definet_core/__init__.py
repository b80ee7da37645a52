"""DefiNet core: defect-explicit graphs, the DefiNet model, training, evaluation and prediction.

This package imports only torch, torch_geometric, pymatgen and numpy (plus tqdm and matplotlib for
progress and plots); jobflow, atomate2 and FireWorks live in ``workflows`` and ``launchpad``.
"""

from definet_core.config import ModelConfig
from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker

__all__ = ["DefiNetInputError", "Marker", "ModelConfig"]
