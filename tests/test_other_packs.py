"""Other packs' attention patches compose with the edit, whichever node comes first.

Each composition is sampled three ways with the same seed: the other pack alone (plain batch of the
prompt pair), the edit alone, and both (the other pack's nodes before the P2P node, and after it). Both
orders give the same latent; its source row is the other pack's alone (the other pack's effect is there,
the edit leaves the source alone), and its target row differs from the other pack's alone (the edit is
there) and from the edit's alone (the other pack acts on the target too). The stand-ins
(devtools/fixture_nodes/other_packs.py) assert that every call's options describe the batch it gets.
"""

from __future__ import annotations

import pytest
import torch

from devtools import harness
from devtools.graphs import edit_graph

harness.boot()

SOURCE = "a red cat riding a bicycle"
EDIT = dict(edit="AttentionRefine", target="a fluffy red cat riding a bicycle", sampler="dpmpp_2m", steps=4)
"""Refine adds a word: the new token keeps its own attention, so the edit calls the kernel on the target rows
alone too (the direct term), not only on the whole batch."""
PRESENT = 0.25
"""An effect is present in a composed latent when it changes it by a quarter of what it changes alone."""

COMPOSITIONS = {
    "attn2 replace per block": [("P2PTestOtherAttn2Replace", {"key": "block", "strength": 10.0})],
    "attn2 replace per transformer": [("P2PTestOtherAttn2Replace", {"key": "transformer", "strength": 10.0})],
    "patch object updated in place": [
        ("P2PTestOtherPatchObject", {"strength": 10.0}),
        ("P2PTestOtherPatchObject", {"strength": 5.0}),
    ],
    "attn1_patch": [("P2PTestOtherInputPatch", {"kind": "attn1_patch", "strength": 2.0})],
    "attn2_patch": [("P2PTestOtherInputPatch", {"kind": "attn2_patch", "strength": 2.0})],
    "attention override": [("P2PTestOtherAttentionOverride", {"sharpen": 1.5})],
    "two attention overrides": [
        ("P2PTestOtherAttentionOverride", {"sharpen": 1.5}),
        ("P2PTestOtherAttentionOverride", {"sharpen": 0.8}),
    ],
}
CALL_NAMES = {
    "P2PTestOtherAttn2Replace": lambda inputs: f"attn2 {inputs['key']}",
    "P2PTestOtherPatchObject": lambda inputs: "object",
    "P2PTestOtherInputPatch": lambda inputs: inputs["kind"],
    "P2PTestOtherAttentionOverride": lambda inputs: "override",
}


def other_pack_calls():
    return harness.loaded_module(harness.FIXTURE_NODES, "other_packs").CALLS


def insert_nodes(graph: dict, nodes: list[tuple[str, dict]], into: str) -> dict:
    """`nodes` chained into the MODEL input of graph node `into` (each takes the model before it)."""
    model = graph[into]["inputs"]["model"]
    for i, (class_type, inputs) in enumerate(nodes):
        name = f"other_{into}_{i}"
        graph[name] = {"class_type": class_type, "inputs": {"model": model, **inputs}}
        model = [name, 0]
    graph[into]["inputs"]["model"] = model
    return graph


def sample(graph: dict, name: str, captured: dict, keep_outputs: bool = False) -> torch.Tensor:
    graph["capture"]["inputs"]["name"] = name
    harness.run_graph(graph, keep_outputs=keep_outputs)
    return captured[name]


def check_composition(
    captured: dict, nodes: list, orders: dict[str, dict], settings: dict, keep_outputs: bool = False
) -> None:
    """Sample neither, the other pack alone, the edit alone and each of `orders` (graph builders); check as
    the module docstring says. An effect is there when the composed latent differs by at least
    PRESENT of the largest change that effect makes alone (the other pack's on either row, the edit's on
    the target). keep_outputs: on one executor (a big checkpoint is loaded once)."""
    calls = other_pack_calls()
    plain = sample(edit_graph(**{**settings, "edit": None}, batch=2), "plain", captured, keep_outputs)
    alone_graph = insert_nodes(edit_graph(**{**settings, "edit": None}, batch=2), nodes, "sample")
    alone = sample(alone_graph, "alone", captured, keep_outputs)
    edit_alone = sample(edit_graph(**settings), "edit alone", captured, keep_outputs)
    other_effect = (alone - plain).abs().max()
    edit_effect = (edit_alone[1] - plain[1]).abs().max()
    assert other_effect > 0 and edit_effect > 0
    results = {}
    for order, graph in orders.items():
        calls.clear()
        results[order] = composed = sample(graph, order, captured, keep_outputs)
        for class_type, inputs in nodes:
            assert calls[CALL_NAMES[class_type](inputs)] > 0, f"{order}: {class_type} was never called"
        assert torch.isfinite(composed).all()
        assert torch.equal(composed[0], alone[0]), f"{order}: the source row is not the other pack's alone"
        assert (composed[1] - alone[1]).abs().max() > PRESENT * edit_effect, f"{order}: the edit vanished"
        assert (composed[1] - edit_alone[1]).abs().max() > PRESENT * other_effect, f"{order}: the other pack vanished"
    first, *others = results.values()
    for order, composed in zip(list(results)[1:], others, strict=True):
        assert torch.equal(composed, first), f"{order} differs from {list(results)[0]}"


def both_orders(nodes: list, settings: dict) -> dict[str, dict]:
    return {
        "other pack first": insert_nodes(edit_graph(**settings), nodes, "edit"),
        "P2P first": insert_nodes(edit_graph(**settings), nodes, "sample"),
    }


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_another_pack_composes_in_either_order(captured, name):
    check_composition(captured, COMPOSITIONS[name], both_orders(COMPOSITIONS[name], EDIT), EDIT)


def test_a_patch_object_updated_in_place_by_a_node_after_the_edit(captured):
    """IPAdapter_plus: the second node finds its own patch object under the key and calls `.add` on it."""
    first, second = COMPOSITIONS["patch object updated in place"]
    around = insert_nodes(insert_nodes(edit_graph(**EDIT), [first], "edit"), [second], "sample")
    check_composition(captured, [first, second], {"around the edit": around}, EDIT)


def test_sdxl_and_cfg_one(captured):
    """SDXL's blocks hold several transformers (per block key: one patch for all of them); cfg 1 samples
    the conditional chunk alone."""
    nodes = COMPOSITIONS["attn2 replace per block"] + COMPOSITIONS["attention override"]
    for settings in ({**EDIT, "family": "sdxl"}, {**EDIT, "cfg": 1.0}):
        check_composition(captured, nodes, both_orders(nodes, settings), settings)


def test_the_other_packs_term_is_added_once_to_the_direct_term(captured):
    """An identity edit whose words have their own windows (the direct term: the target rows' own
    attention on the words outside their window) with an adapter that adds a term: the target stays the
    source. Had the edit called the adapter on the target rows a second time and kept its term, the
    target would carry the term twice."""
    nodes = COMPOSITIONS["attn2 replace per transformer"] + COMPOSITIONS["attn2_patch"]
    settings = dict(
        target=SOURCE,
        sampler="euler",
        edit_inputs={"word_schedule": "cat=0.0-0.3, bicycle=0.5-0.8", "self_replace": 0.0},
    )
    plain = sample(edit_graph(**{**settings, "edit": None}, batch=2), "plain", captured)
    alone = sample(insert_nodes(edit_graph(**{**settings, "edit": None}, batch=2), nodes, "sample"), "alone", captured)
    effect = (alone[0] - plain[0]).abs().max()
    assert effect > 0, "the adapter did nothing"
    for order, graph in both_orders(nodes, settings).items():
        out = sample(graph, order, captured)
        assert torch.equal(out[0], alone[0]), order
        # Twice the adapter's term would move the target from the source by about the adapter's effect.
        assert (out[1] - out[0]).abs().max() <= 0.01 * effect, order


@pytest.mark.slow
def test_on_the_real_sd15_shapes(captured):
    from devtools.checkpoints import checkpoint

    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint("sd15")}}
    settings = {**EDIT, "loader": loader, "steps": 2}
    nodes = COMPOSITIONS["attn2 replace per block"]
    check_composition(captured, nodes, both_orders(nodes, settings), settings, keep_outputs=True)
