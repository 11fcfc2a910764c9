"""The real ComfyUI frontend in the browser: open it as a returning user, drop workflow files on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..comfy_host import REPO
from .cdp import Chromium

NEWEST_FRONTEND_PIN = REPO / "scripts" / "newest-frontend.txt"
"""The newest comfyui-frontend-package the browser tests check, pinned (`name==version`); scripts/setup.sh --host
installs it under NEWEST_FRONTEND_DIR."""
NEWEST_FRONTEND_VERSION = NEWEST_FRONTEND_PIN.read_text().strip().split("==")[1]
NEWEST_FRONTEND_DIR = REPO / ".cache" / f"frontend-{NEWEST_FRONTEND_VERSION}"

SETTINGS = {
    # A first visit opens the templates browser over the canvas.
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    # The frame rate in the corner would make every screenshot differ from the last.
    "Comfy.Graph.CanvasInfo": False,
}
QUIET_JS = "localStorage.setItem('vueNodesBannerDismissed', 'true');"
"""Before the page's own scripts: no "try the new node design" banner over the screenshots."""

DROP_JS = """
async (name, text) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([text], name, { type: "application/json" }));
  for (const node of app.graph.nodes) node.p2pBeforeDrop = true;
  document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const nodes = app.graph.nodes;
    if (nodes.length && !nodes.some((n) => n.p2pBeforeDrop)) return nodes.length;
  }
  return 0;
}
"""


def newest_frontend() -> Path:
    """The `static` folder of the pinned newest frontend package, for `main.py --front-end-root`."""
    static = NEWEST_FRONTEND_DIR / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        raise FileNotFoundError(
            f"no comfyui-frontend-package {NEWEST_FRONTEND_VERSION} in {NEWEST_FRONTEND_DIR}:"
            " run scripts/setup.sh --host ../shared/hosts/comfyui-0.8.0"
        )
    return static


def open_frontend(server, browser: Chromium) -> None:
    """Open the server's frontend and wait until it has loaded the node definitions and this pack's extension."""
    response = server.post("/settings", json=SETTINGS)
    response.raise_for_status()
    browser.send("Page.addScriptToEvaluateOnNewDocument", source=QUIET_JS)
    browser.goto(server.url)
    browser.wait_for(
        "window.app?.graph && window.LiteGraph?.registered_node_types?.PromptPair"
        " && app.extensions?.some((e) => e.name === 'PromptToPrompt.Alignment')",
        timeout=90,
        what="the frontend with the pack's nodes and extension",
    )


def drop_workflow(browser: Chromium, name: str, text: str) -> int:
    """Drop a workflow file on the page as a user drags one in; returns the number of nodes loaded."""
    count = browser.call(DROP_JS, name, text)
    if not count:
        raise AssertionError(f"dropping {name} loaded no graph")
    return count


INSTRUMENT_JS = """
(() => {
  // Remember the id of every prompt the frontend queues (the server's answer to POST /prompt).
  if (window.__p2pQueued) return;
  window.__p2pQueued = [];
  const api = window.comfyAPI.api.api;
  const queuePrompt = api.queuePrompt.bind(api);
  api.queuePrompt = async (...args) => {
    const answer = await queuePrompt(...args);
    window.__p2pQueued.push(answer.prompt_id);
    return answer;
  };
})()
"""


def queue_from_frontend(browser: Chromium) -> str:
    """Queue the loaded graph as the Run button does (after INSTRUMENT_JS ran in the page); the prompt id, or
    the frontend's error."""
    count = browser.evaluate("window.__p2pQueued.length")
    browser.evaluate("app.queuePrompt(0, 1)")
    errors = browser.evaluate("JSON.stringify(app.lastNodeErrors ?? null)")
    if json.loads(errors) not in (None, {}):
        raise AssertionError(f"the server refused the graph: {errors}")
    browser.wait_for(f"window.__p2pQueued.length > {count}", timeout=30, what="the prompt to be queued")
    return browser.evaluate("window.__p2pQueued.at(-1)")


@contextmanager
def frontend_page(server) -> Iterator[Chromium]:
    """Headless Chromium on the server's frontend, opened as a returning user opens it, recording the id of
    every prompt it queues (for `queue_from_frontend`)."""
    with Chromium() as chromium:
        open_frontend(server, chromium)
        chromium.evaluate(INSTRUMENT_JS)
        yield chromium
