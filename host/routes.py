"""The pack's server routes, for the frontend: `POST /p2p/align`, how PromptPair's prompts align, and
`GET /p2p/word_inputs`, the inputs of the pack's nodes that name words of the prompts (WORD_INPUTS).

`POST /p2p/align` request (JSON, at most MAX_BODY bytes):
  {"source": str, "target": str (one target per line), "edit": "replace" | "refine",
   "checks": [{"field": "weights" | "word_schedule" | "source_words" | "target_words" | "words",
               "text": str, "node": any}]}
Answer:
  {"source": {"words": [str]},
   "targets": [{"text": str, "error": str | null, "removed": [str],
                "words": [{"word": str, "status": "kept" | "swapped" | "added" | "partly kept",
                           "from": [str], "tokens": [str]}]}],
   "problems": [{"field": str, "node": any, "word": str | null, "message": str}]}
Bad requests get 400 with {"error": reason}.

Tokens come from ComfyUI's own CLIP tokenizer (the SD1.x/SD2.x/SDXL vocabulary shipped with
ComfyUI); alignments from the mappers the edit nodes use. Nothing named by the client is opened
or loaded.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache

from aiohttp import web

from ..p2p_core.alignment import refinement_mapper, replacement_mapper
from ..p2p_core.blending import split_words
from ..p2p_core.explain import explain
from ..p2p_core.schedules import parse_word_values
from ..p2p_core.tokens import PromptTokens, find_word
from .prompts import END_OF_WORD, read_tokens, split_targets

MAX_BODY = 32 * 1024
MAX_PROMPT = 2000
"""Characters per prompt (about 6 chunks of 77 tokens)."""
MAX_TARGETS = 16
MAX_CHECKS = 32
MAPPERS = {"replace": replacement_mapper, "refine": refinement_mapper}
WORD_INPUTS = {
    "AttentionReplace": {"word_schedule": "targets"},
    "AttentionRefine": {"word_schedule": "targets"},
    "Reweight": {"weights": "targets"},
    "LocalBlend": {"source_words": "source", "target_words": "targets"},
    "AttentionMaskExtract": {"words": "any"},
}
"""Node id -> its inputs that name words of the prompts -> which prompts the words must be in (served to the
editor by `GET /p2p/word_inputs`, checked by `POST /p2p/align`)."""
WHERE = {name: where for inputs in WORD_INPUTS.values() for name, where in inputs.items()}


class BadRequest(ValueError):
    """A request the route refuses; the message is the reason given to the client."""


@cache
def _tokenizer():
    from comfy.sd1_clip import SD1Tokenizer

    return SD1Tokenizer()


def _tokens(text: str) -> PromptTokens:
    tokenizer = _tokenizer()
    return read_tokens(tokenizer, text, tokenizer.tokenize_with_weights(text, return_word_ids=True))[0]


def _pieces(prompt: PromptTokens, word: int) -> list[str]:
    vocab = _tokenizer().clip_l.inv_vocab
    return [vocab.get(prompt.token_ids[p], "?").removesuffix(END_OF_WORD) for p in prompt.word_positions(word)]


def _string(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{name!r} is longer than {limit} characters")
    return value


def _align(source: PromptTokens, target: PromptTokens, edit: str) -> dict:
    try:
        mapper, injected = MAPPERS[edit](source, target)
    except ValueError as error:
        return {"text": target.text, "error": str(error), "words": [], "removed": []}
    links, removed = explain(source, target, mapper, injected)
    words = [
        {
            "word": link.word,
            "status": link.status,
            "from": [source.words[i] for i in link.sources],
            "tokens": _pieces(target, index),
        }
        for index, link in enumerate(links)
    ]
    return {"text": target.text, "error": None, "words": words, "removed": [source.words[i] for i in removed]}


def _check(check: dict, source: PromptTokens, targets: list[PromptTokens]) -> list[dict]:
    field = check.get("field")
    if field not in WHERE:
        raise BadRequest(f"check field must be one of {', '.join(WHERE)}, not {field!r}")
    text = _string(check, "text", MAX_PROMPT)
    node = check.get("node")
    if not isinstance(node, (str, int, type(None))):
        raise BadRequest("check 'node' must be a string or a number")
    try:
        if field in ("weights", "word_schedule"):
            words = [word for word, _ in parse_word_values(text, field)]
        else:
            words = split_words(text)
    except ValueError as error:
        return [{"field": field, "node": node, "word": None, "message": str(error)}]
    prompts = {"source": [source], "targets": targets, "any": [source, *targets]}[WHERE[field]]
    problems = []
    for word in words:
        try:
            find_word(prompts, word, field)
        except ValueError as error:
            problems.append({"field": field, "node": node, "word": word, "message": str(error)})
    return problems


def align(body: object) -> dict:
    """The answer to one request body (parsed JSON); BadRequest on anything malformed."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    source_text = _string(body, "source", MAX_PROMPT)
    target_lines = split_targets(_string(body, "target", MAX_PROMPT * MAX_TARGETS))
    edit = body.get("edit", "refine")
    if edit not in MAPPERS:
        raise BadRequest(f"'edit' must be one of {', '.join(MAPPERS)}, not {edit!r}")
    if not source_text.strip():
        raise BadRequest("the source prompt is empty")
    if not target_lines:
        raise BadRequest("the target prompt is empty (write one target per line)")
    if len(target_lines) > MAX_TARGETS:
        raise BadRequest(f"more than {MAX_TARGETS} target lines")
    if any(len(line) > MAX_PROMPT for line in target_lines):
        raise BadRequest(f"a target line is longer than {MAX_PROMPT} characters")
    checks = body.get("checks", [])
    if not isinstance(checks, list) or len(checks) > MAX_CHECKS or not all(isinstance(c, dict) for c in checks):
        raise BadRequest(f"'checks' must be a list of at most {MAX_CHECKS} objects")
    source = _tokens(source_text)
    targets = [_tokens(line) for line in target_lines]
    return {
        "source": {"words": list(source.words)},
        "targets": [_align(source, target, edit) for target in targets],
        "problems": [problem for check in checks for problem in _check(check, source, targets)],
    }


async def align_route(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return web.json_response({"error": f"the request is larger than {MAX_BODY} bytes"}, status=400)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return web.json_response({"error": f"the request is larger than {MAX_BODY} bytes"}, status=400)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "the body is not JSON"}, status=400)
    try:
        return web.json_response(await asyncio.to_thread(align, body))
    except BadRequest as error:
        return web.json_response({"error": str(error)}, status=400)


async def word_inputs_route(request: web.Request) -> web.Response:
    return web.json_response({node: list(inputs) for node, inputs in WORD_INPUTS.items()})


def register_routes() -> None:
    """Adds the routes to the running ComfyUI server; nothing when ComfyUI runs without one (in-process tests)."""
    from server import PromptServer

    instance = getattr(PromptServer, "instance", None)
    if instance is not None:
        instance.routes.post("/p2p/align")(align_route)
        instance.routes.get("/p2p/word_inputs")(word_inputs_route)
