"""The node classes of the pack: each a schema and one call into `host/` (the ComfyUI glue) or `p2p_core`.
Node ids and input names are the interface of saved workflows: never change them."""

from .attention_maps import AttentionMapRecorder, AttentionMaskExtract
from .demo_model import NODES as DEMO_NODES
from .edit_nodes import AttentionRefine, AttentionReplace, Reweight
from .inversion import DDIMInvert
from .local_blend import LocalBlend
from .prompt_pair import PromptPair

NODES = [PromptPair, AttentionReplace, AttentionRefine, Reweight]
NODES += [LocalBlend, AttentionMapRecorder, AttentionMaskExtract]
NODES += [DDIMInvert]
NODES += DEMO_NODES
