"""The pack's subgraph blueprints (`subgraphs/*.json`) as a user meets them: the server lists them, the real
frontend shows them among its node definitions under "Subgraph Blueprints", and one added to a graph the way
the node library adds it, wired to a loader and a sampler, gives the images of the workflow it was made from,
its promoted widgets reaching the nodes inside."""

from __future__ import annotations

import json

import pytest

from devtools import harness
from devtools.browser.build_workflows import BLUEPRINTS
from devtools.browser.cdp import Chromium
from devtools.browser.frontend import drop_workflow, frontend_page, queue_from_frontend

LISTED_JS = """
async () => {
  // The blueprints the frontend loaded, as its node library lists them.
  const pinia = document.querySelector("#vue-app").__vue_app__.config.globalProperties.$pinia;
  const store = pinia._s.get("subgraph");
  for (let i = 0; i < 100 && !store.subgraphBlueprints?.length; i++) await new Promise((r) => setTimeout(r, 100));
  return store.subgraphBlueprints.map((d) => [d.display_name, d.category]);
}
"""

SWAP_IN_JS = """
async (name, group) => {
  // Put the blueprint `name` in place of the workflow's nodes of types `group`, as the node library adds a
  // blueprint (the frontend's own paste of its nodes), and wire it where they were.
  const pinia = document.querySelector("#vue-app").__vue_app__.config.globalProperties.$pinia;
  const store = pinia._s.get("subgraph");
  const def = store.subgraphBlueprints.find((d) => d.display_name === name);
  const data = store.getBlueprint(def.name);
  const items = { nodes: data.nodes, subgraphs: data.definitions?.subgraphs };
  const added = app.canvas._deserializeItems(items, { position: [800, 0] });
  const node = added.nodes.values().next().value;
  const graph = app.graph;
  for (const n of graph.nodes.filter((n) => group.includes(n.type))) graph.remove(n);
  const loader = graph.nodes.find((n) => n.type === "P2PDemoModelLoader");
  const sampler = graph.nodes.find((n) => n.type === "KSampler");
  const slot = (slots, test) => slots.findIndex(test);
  loader.connect(0, node, slot(node.inputs, (i) => i.type === "MODEL"));
  loader.connect(1, node, slot(node.inputs, (i) => i.type === "CLIP"));
  node.connect(slot(node.outputs, (o) => o.type === "MODEL"), sampler, slot(sampler.inputs, (i) => i.name === "model"));
  const positive = slot(sampler.inputs, (i) => i.name === "positive");
  node.connect(slot(node.outputs, (o) => o.type === "CONDITIONING"), sampler, positive);
  graph.setDirtyCanvas(true, true);
  // A promoted widget is named "<inner node id>: <widget>".
  return node.widgets.map((w) => w.name.split(": ").at(-1));
}
"""

SET_JS = """
(name, value) => {
  // Type into a promoted widget of the blueprint's node.
  const node = app.graph.nodes.find((n) => n.isSubgraphNode?.());
  const widget = node.widgets.find((w) => w.name.split(": ").at(-1) === name);
  widget.value = value;
  widget.callback?.(value);
}
"""


@pytest.fixture(scope="module")
def browser(comfy_server):
    with frontend_page(comfy_server) as chromium:
        yield chromium


def test_the_server_and_the_frontend_list_the_blueprints(comfy_server, browser: Chromium) -> None:
    listed = comfy_server.get("/global_subgraphs").json()
    ours = sorted(e["name"] for e in listed.values() if e["info"]["node_pack"].endswith("comfyui-prompt-to-prompt"))
    assert ours == sorted(BLUEPRINTS)
    shown = browser.call(LISTED_JS)
    assert sorted(name for name, category in shown if category == "Subgraph Blueprints") == sorted(BLUEPRINTS)


def queued_images(server, browser: Chromium) -> list:
    """Queue the page's graph as the Run button does; the images it saved."""
    return server.images(server.check(server.wait(queue_from_frontend(browser), timeout=300)))


@pytest.mark.parametrize("name", sorted(BLUEPRINTS))
def test_a_blueprint_in_a_graph_edits_as_its_workflow(comfy_server, browser: Chromium, name: str) -> None:
    blueprint = BLUEPRINTS[name]
    path = harness.REPO / "workflows" / f"{blueprint.workflow}.json"
    saved = json.loads(path.read_text())
    group = sorted({n["type"] for n in saved["nodes"]} & {"PromptPair", "AttentionReplace", "LocalBlend"})

    drop_workflow(browser, path.name, path.read_text())
    shipped = queued_images(comfy_server, browser)
    drop_workflow(browser, path.name, path.read_text())
    widgets = browser.call(SWAP_IN_JS, name, group)
    assert widgets == [widget for _, widget in blueprint.promoted]
    through_blueprint = queued_images(comfy_server, browser)
    assert len(through_blueprint) == 2 and [i.tobytes() for i in through_blueprint] == [i.tobytes() for i in shipped]
    assert through_blueprint[0].tobytes() != through_blueprint[1].tobytes()  # the edit changed the target

    # The promoted `target` reaches the PromptPair inside: the source as the target edits nothing (and the
    # blend's target word is then the source's).
    source = next(n for n in saved["nodes"] if n["type"] == "PromptPair")["widgets_values"][0]
    browser.call(SET_JS, "target", source)
    blend = next((n for n in saved["nodes"] if n["type"] == "LocalBlend"), None)
    if blend is not None:
        browser.call(SET_JS, "target_words", blend["widgets_values"][0])
    same = queued_images(comfy_server, browser)
    assert same[0].tobytes() == same[1].tobytes() == shipped[0].tobytes()
