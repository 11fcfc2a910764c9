"""torch.compile on a P2P-patched model: ComfyUI's TorchCompileModel before or after the edit node.

The backend is aot_eager (dynamo + AOT autograd's functionalised graphs, run by eager kernels: every CPU
runs it in seconds), given to the stock node through the P2PTestTorchCompile fixture, which counts the
graphs it compiles. The edit's host-side work runs outside the graphs (AttentionPatch.prepare), so the
graphs depend on which windows are open, never on the step: a longer run of the same edit compiles
nothing new.
"""

import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

comfy_harness.boot()

FIXTURES = comfy_harness.loaded_module(comfy_harness.FIXTURE_NODES)
REFINE = dict(
    edit="AttentionRefine",
    target="a photo of a red cat riding a bicycle",
    sampler="euler",
    edit_inputs={"self_layers": "all layers"},
)


def compiled(graph: dict, order: str, fullgraph: bool = False) -> dict:
    """`graph` with the compile node between the loader and the edit node, or between the edit and the sampler."""
    before = order == "compile, then edit"
    consumer = graph["edit"] if before else graph["sample"]
    source = ["model", 0] if before else consumer["inputs"]["model"]
    graph["compile"] = {
        "class_type": "P2PTestTorchCompile",
        "inputs": {"model": source, "backend": "aot_eager", "fullgraph": fullgraph},
    }
    consumer["inputs"]["model"] = ["compile", 0]
    return graph


@pytest.mark.slow  # compiling the tiny UNet: 16 minutes on 2 cores shared with other jobs
def test_a_compiled_edit_samples_as_the_uncompiled_one_in_either_order(captured):
    torch._dynamo.reset()
    FIXTURES.COMPILES.clear()
    comfy_harness.run_graph(edit_graph(**REFINE, steps=3, capture="eager"))
    comfy_harness.run_graph(edit_graph(**{**REFINE, "edit": None}, batch=2, steps=3, capture="plain"))
    eager, plain = captured["eager"], captured["plain"]
    scale = eager.abs().max()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for order in ("edit, then compile", "compile, then edit"):
            comfy_harness.run_graph(compiled(edit_graph(**REFINE, steps=3, capture=order), order))
            assert (captured[order] - eager).abs().max() <= 1e-5 * scale, order
    # Three steps open and close both windows (self 0.4, cross 0.8): every graph the edit needs is built.
    assert FIXTURES.COMPILES, "nothing was compiled: the compile node did not take effect"
    assert (captured["edit, then compile"][1] - plain[1]).abs().max() > 1e-2 * scale  # the edit acted
    built = len(FIXTURES.COMPILES)
    with torch._dynamo.config.patch(error_on_recompile=True):
        comfy_harness.run_graph(compiled(edit_graph(**REFINE, steps=7, capture="longer"), "edit, then compile"))
    assert len(FIXTURES.COMPILES) == built
    comfy_harness.run_graph(edit_graph(**REFINE, steps=7, capture="longer eager"))
    assert (captured["longer"] - captured["longer eager"]).abs().max() <= 1e-5 * scale


def test_fullgraph_compile_is_refused_by_name(captured):
    graph = compiled(edit_graph(**REFINE, steps=2), "edit, then compile", fullgraph=True)
    refusal = r"Prompt-to-Prompt: this model is compiled with torch.compile\(fullgraph=True\)"
    with pytest.raises(comfy_harness.GraphError, match=refusal):
        comfy_harness.run_graph(graph)
