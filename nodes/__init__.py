"""ComfyUI adapters of the pack: each node reads its inputs and makes one call into p2p_core."""

from .blend_nodes import AttentionMapRecorder, AttentionMaskExtract, LocalBlend
from .demo_model import NODES as DEMO_NODES
from .edit_nodes import AttentionRefine, AttentionReplace, Reweight
from .inversion import DDIMInvert
from .prompt_pair import PromptPair

NODES = [PromptPair, AttentionReplace, AttentionRefine, Reweight]
NODES += [LocalBlend, AttentionMapRecorder, AttentionMaskExtract]
NODES += [DDIMInvert]
NODES += DEMO_NODES
