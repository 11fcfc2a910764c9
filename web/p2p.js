// Prompt-to-Prompt frontend extension.
//
// PromptPair: as the prompts are typed, shows how each target aligns with the source, word by
// word (kept, swapped, added, removed), as the pack's server route computes it with ComfyUI's own
// CLIP tokenizer and the mappers the edit nodes use; warns on words named by the connected nodes
// (Reweight weights, word_schedule, LocalBlend and mask words) that are not in the prompts, in the
// panel and in a line inside each of those nodes.
// AttentionMaskExtract: shows what each mask covers, under the node.
//
// Everything shown is a DOM widget (`node.addDOMWidget`): the classic LiteGraph canvas lays it over the
// node, and the Vue node renderer ("Nodes 2.0", setting Comfy.VueNodes.Enabled) puts it in the node's
// element. Nothing is drawn on the canvas: the Vue renderer does not call the nodes' onDrawForeground.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const ROUTE = "/p2p/align";
const WORD_INPUTS_ROUTE = "/p2p/word_inputs";
const DEBOUNCE_MS = 350;
const POLL_MS = 300;
// Inputs of the pack's nodes that name words of the prompts: node id -> widget names, as the server
// lists them (host/routes.py WORD_INPUTS), fetched once at `init`.
let WORD_INPUTS = {};
const STYLE = `
.p2p-align { font: 12px/1.5 sans-serif; color: var(--input-text, #ddd); overflow-y: auto; padding: 2px 4px;
  box-sizing: border-box; height: 100%; }
.p2p-align .p2p-row { margin: 2px 0 4px; }
.p2p-align .p2p-label { opacity: 0.7; margin-right: 4px; }
.p2p-align .p2p-word { display: inline-block; border-radius: 3px; padding: 0 3px; margin: 1px 2px 1px 0; }
.p2p-align .kept { background: rgba(128, 128, 128, 0.25); }
.p2p-align .swapped { background: rgba(230, 140, 20, 0.45); }
.p2p-align .added { background: rgba(40, 170, 80, 0.45); }
.p2p-align .partly { background: rgba(200, 190, 40, 0.45); }
.p2p-align .removed { background: rgba(210, 50, 50, 0.35); text-decoration: line-through; }
.p2p-align .p2p-error, .p2p-align .p2p-problem { color: #ff7b6b; }
.p2p-align .p2p-legend { opacity: 0.6; font-size: 11px; }
.p2p-lines { font-size: 11px; line-height: 16px; }
.p2p-lines .p2p-row { margin: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
`;

function addStyle() {
  if (document.getElementById("p2p-style")) return;
  const style = document.createElement("style");
  style.id = "p2p-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function widgetValue(node, name) {
  return node.widgets?.find((w) => w.name === name)?.value;
}

function linkOf(graph, id) {
  return graph.getLink?.(id) ?? graph.links?.get?.(id) ?? graph.links?.[id];
}

// The nodes fed by PromptPair's `prompts` output.
function consumers(node) {
  const output = node.outputs?.find((o) => o.type === "P2P_PROMPTS");
  const out = [];
  for (const id of output?.links ?? []) {
    const link = linkOf(node.graph, id);
    const target = link && node.graph.getNodeById(link.target_id);
    if (target) out.push(target);
  }
  return out;
}

// The request for the route: the prompts, the edit the prompts go to, and the word inputs to check.
function request(node) {
  const fed = consumers(node);
  const edit = fed.some((n) => n.comfyClass === "AttentionReplace") ? "replace" : "refine";
  const checks = [];
  for (const n of fed) {
    for (const field of WORD_INPUTS[n.comfyClass] ?? []) {
      const text = widgetValue(n, field);
      if (typeof text === "string" && text.trim()) checks.push({ field, text, node: String(n.id) });
    }
  }
  return { source: widgetValue(node, "source") ?? "", target: widgetValue(node, "target") ?? "", edit, checks };
}

function span(cls, text, title) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  if (title) el.title = title;
  return el;
}

const STATUS_CLASS = { kept: "kept", swapped: "swapped", added: "added", "partly kept": "partly" };

function describe(word) {
  const tokens = `tokens: ${word.tokens.join(" | ")}`;
  if (word.status === "swapped") return `swapped: takes the attention of "${word.from.join(" ")}" (${tokens})`;
  if (word.status === "added") return `added: attends freely (${tokens})`;
  if (word.status === "partly kept") return `partly kept: some tokens are new (${tokens})`;
  return `kept (${tokens})`;
}

// Target lines that align alike (a fader sweep repeats one target) share one row.
function groups(targets) {
  const out = [];
  targets.forEach((target, i) => {
    const last = out.at(-1);
    if (last && last.target.text === target.text) last.last = i;
    else out.push({ target, first: i, last: i });
  });
  return out;
}

function targetLabel({ first, last }, count) {
  if (count === 1) return "target:";
  return first === last ? `target ${first + 1}:` : `targets ${first + 1}-${last + 1}:`;
}

function render(panel, answer, edit, titles) {
  panel.replaceChildren();
  // Problems first: they are what needs fixing, and the rows below may scroll.
  for (const problem of answer.problems) {
    const row = document.createElement("div");
    row.className = "p2p-problem";
    row.dataset.word = problem.word ?? "";
    row.textContent = `⚠ ${titles[problem.node] ?? "node"}: ${problem.message}`;
    panel.appendChild(row);
  }
  const editName = edit === "replace" ? "Attention Replace (word swap)" : "Attention Refine";
  panel.appendChild(span("p2p-legend", `Alignment for ${editName}: kept, swapped, added, removed`));
  for (const group of groups(answer.targets)) {
    const { target } = group;
    const row = document.createElement("div");
    row.className = "p2p-row";
    row.dataset.target = String(group.first);
    row.appendChild(span("p2p-label", targetLabel(group, answer.targets.length)));
    if (target.error) {
      row.appendChild(span("p2p-error", target.error));
    } else {
      for (const word of target.words) {
        const cls = STATUS_CLASS[word.status] ?? "kept";
        const text = word.status === "swapped" ? `${word.from.join(" ")} → ${word.word}` : word.word;
        const el = span(`p2p-word ${cls}`, word.status === "added" ? `+${text}` : text, describe(word));
        el.dataset.status = word.status;
        row.appendChild(el);
      }
      for (const word of target.removed) {
        const el = span("p2p-word removed", word, "removed: in the source only");
        el.dataset.status = "removed";
        row.appendChild(el);
      }
    }
    panel.appendChild(row);
  }
}

const LINE_PX = 16;
const WARNING = "p2p_warning";
const MASK_REPORT = "mask_report";

// A DOM widget for lines of text in the node, empty (no height) until `showLines` fills it. It is made with
// the node: the Vue renderer of ComfyUI_frontend 1.32.9 and 1.35.9 (not 1.58.1) shows no widget added to a
// node after one of the node's widget values has changed (its node data then holds a copy of the widget list).
function addLines(node, name) {
  addStyle();
  const el = document.createElement("div");
  el.className = "p2p-align p2p-lines";
  const minHeight = () => (el.childElementCount ? 8 + LINE_PX * el.childElementCount : 0);
  const widget = node.addDOMWidget(name, "p2p_lines", el, { hideOnZoom: false, getMinHeight: minHeight });
  widget.serialize = false;
  widget.computeLayoutSize = () => ({ minHeight: minHeight(), minWidth: 200 });
}

// Fill the node's lines widget `name` (addLines) with one row each ({ text, problem }: problem rows in red;
// a row too long for the node ends in "…" and shows whole as its tooltip); the node grows to fit them.
function showLines(node, name, rows) {
  const el = node.widgets.find((w) => w.name === name).element;
  el.replaceChildren(
    ...rows.map(({ text, problem }) => {
      const row = document.createElement("div");
      row.className = problem ? "p2p-row p2p-problem" : "p2p-row";
      row.textContent = text;
      row.title = text;
      return row;
    }),
  );
  node.setSize([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

// The warning line inside each node fed by PromptPair whose word inputs name words the prompts lack.
function markProblems(node, problems) {
  const byNode = {};
  for (const p of problems) (byNode[p.node] ??= []).push(p.word ? `"${p.word}" is not in the prompt` : p.message);
  for (const n of consumers(node)) {
    const next = byNode[String(n.id)] ?? null;
    if (JSON.stringify(n.p2pProblems ?? null) === JSON.stringify(next)) continue;
    n.p2pProblems = next;
    showLines(n, WARNING, (next ?? []).map((text) => ({ text: `⚠ ${text}`, problem: true })));
  }
}

function setupPromptPair(node) {
  addStyle();
  const panel = document.createElement("div");
  panel.className = "p2p-align";
  panel.textContent = "Type a source and a target prompt to see how they align.";
  const widget = node.addDOMWidget("alignment", "p2p_alignment", panel, { hideOnZoom: false });
  widget.serialize = false;
  widget.computeLayoutSize = () => ({ minHeight: 60, minWidth: 200 });
  node.p2pAlignment = { panel, key: null, answer: null, pending: null };

  let timer = null;
  let sequence = 0;
  const update = async (body) => {
    const mine = ++sequence;
    const titles = Object.fromEntries(consumers(node).map((n) => [String(n.id), `${n.title} #${n.id}`]));
    let answer;
    try {
      const response = await api.fetchApi(ROUTE, { method: "POST", body: JSON.stringify(body) });
      answer = await response.json();
      if (!response.ok) answer = { error: answer.error ?? response.statusText };
    } catch (error) {
      answer = { error: String(error) };
    }
    if (mine !== sequence) return; // a newer request is on its way
    node.p2pAlignment.answer = answer;
    if (answer.error) {
      panel.replaceChildren(span("p2p-error", answer.error));
      markProblems(node, []);
    } else {
      render(panel, answer, body.edit, titles);
      markProblems(node, answer.problems);
    }
    node.p2pAlignment.pending = null;
  };
  // Polling sees every change that matters: typing, the edit nodes' word inputs, new links.
  const poll = setInterval(() => {
    if (!node.graph) return;
    const body = request(node);
    const key = JSON.stringify(body);
    if (key === node.p2pAlignment.key) return;
    node.p2pAlignment.key = key;
    node.p2pAlignment.pending = key;
    clearTimeout(timer);
    timer = setTimeout(() => update(body), DEBOUNCE_MS);
  }, POLL_MS);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    clearInterval(poll);
    clearTimeout(timer);
    return onRemoved?.apply(this, arguments);
  };
}

// AttentionMaskExtract reports what each mask covers: a line of text per row, and per row the numbers
// and flags (`p2p_masks`: share, empty, full) that mark a mask to look at.
function showMaskReport(nodeType) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const lines = message?.text;
    if (!lines?.length) return;
    const coverage = message.p2p_masks ?? [];
    const rows = lines.join("\n").split("\n");
    const flagged = (i) => Boolean(coverage[i]?.empty || coverage[i]?.full);
    showLines(this, MASK_REPORT, rows.map((text, i) => ({ text, problem: flagged(i) })));
  };
}

app.registerExtension({
  name: "PromptToPrompt.Alignment",
  async init() {
    const response = await api.fetchApi(WORD_INPUTS_ROUTE);
    if (response.ok) WORD_INPUTS = await response.json();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === "AttentionMaskExtract") showMaskReport(nodeType);
  },
  async nodeCreated(node) {
    if (node.comfyClass === "PromptPair") setupPromptPair(node);
    if (node.comfyClass in WORD_INPUTS) addLines(node, WARNING);
    if (node.comfyClass === "AttentionMaskExtract") addLines(node, MASK_REPORT);
  },
});
