"""The edit nodes: AttentionReplace, AttentionRefine and Reweight. Each returns a patched clone."""

from __future__ import annotations

from collections.abc import Callable

from comfy_api.latest import io

from ..host.edit import apply_edit
from ..host.errors import UserError, check_same_prompts
from ..host.inversion import pin_source
from ..host.state import edit_state
from ..p2p_core.edits import EditPlan
from ..p2p_core.plans import refine_plan, replace_plan, reweighted_plan
from .inputs import SelfLayersChoice, inversion_input, self_layers_id, window_inputs
from .types import CATEGORY, P2PPrompts, names_errors


def _range(start: float, end: float, what: str) -> str:
    if start > end:
        raise UserError(f"{what}: the start {start} is after the end {end}")
    return f"{start}-{end}"


def _edit(
    model,
    prompts,
    build: Callable[..., EditPlan],
    inversion=None,
    *,
    cross_replace: float,
    self_replace: float,
    word_schedule: str = "",
    cross_start: float = 0.0,
    self_start: float = 0.0,
    self_layers: str | None = None,
) -> io.NodeOutput:
    """The edit of `build` (replace_plan or refine_plan) with the node's window inputs, on a clone."""
    plan = build(
        prompts,
        _range(cross_start, cross_replace, "cross_replace"),
        _range(self_start, self_replace, "self_replace"),
        word_schedule or "",
        self_layers_id(self_layers),
    )
    return io.NodeOutput(pin_source(apply_edit(model, prompts, plan), inversion))


def _schema(node_id: str, display: str, description: str, cross: float, self_: float) -> io.Schema:
    return io.Schema(
        node_id=node_id,
        display_name=display,
        category=CATEGORY,
        description=description,
        inputs=[
            io.Model.Input("model", tooltip="The model to sample with; it is cloned, never changed."),
            P2PPrompts.Input("prompts", tooltip="From PromptPair: the source and target prompts."),
            *window_inputs(cross, self_),
            inversion_input(),
        ],
        outputs=[io.Model.Output(tooltip="The patched model: connect it to a sampler with PromptPair's conditioning.")],
    )


class _WindowEdit(SelfLayersChoice, io.ComfyNode):
    """AttentionReplace and AttentionRefine: the plan `build` with the window inputs."""

    build: Callable[..., EditPlan]
    """replace_plan or refine_plan (a staticmethod of the subclass)."""

    @names_errors
    @classmethod
    def execute(cls, model, prompts, inversion=None, **window) -> io.NodeOutput:
        return _edit(model, prompts, cls.build, inversion, **window)


class AttentionReplace(_WindowEdit):
    build = staticmethod(replace_plan)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "AttentionReplace",
            "P2P Attention Replace (word swap)",
            "Word swap: 'a cat riding a bicycle' -> 'a cat riding a car'. The target takes the source's "
            "attention maps, the swapped words through a token mapper, so the layout is kept. On the "
            "joint-attention models (Flux, SD3, Qwen-Image, Z-Image, Chroma) the target's image tokens take the "
            "source's queries and keys instead, and read the source's text keys through the token mapper.",
            0.8,
            0.4,
        )


class AttentionRefine(_WindowEdit):
    build = staticmethod(refine_plan)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "AttentionRefine",
            "P2P Attention Refine (add a phrase)",
            "Refinement: add or change a phrase ('a castle' -> 'children drawing of a castle'). Tokens "
            "aligned with the source take its maps; new tokens attend freely. On the joint-attention models (Flux, "
            "SD3, Qwen-Image, Z-Image, Chroma) the same edit as Attention Replace: the target's image tokens take "
            "the source's queries and keys and read the aligned words' text keys from the source; new words keep "
            "their own.",
            0.8,
            0.4,
        )


class Reweight(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="Reweight",
            display_name="P2P Reweight (fader)",
            category=CATEGORY,
            description=(
                "Turns words of the target up or down by scaling their attention. Chains after Attention "
                "Replace / Refine (composes with them), or works alone on a prompt pair with the same text."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model, plain or already patched by a P2P edit node."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the same prompts as the edit it chains onto."),
                io.String.Input(
                    "weights",
                    default="fluffy=2.0",
                    tooltip=(
                        "word=factor pairs, comma separated: 'fluffy=2.0, red=-1'. A factor scales the word's "
                        "attention (0 removes it, negative inverts it, 2-4 strengthens). A fader sweep gives "
                        "one factor per target: 'fluffy=-2|0|2|4' with the target on four lines."
                    ),
                ),
                *window_inputs(0.8, 0.4)[:2],
                inversion_input(),
            ],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @names_errors
    @classmethod
    def execute(
        cls, model, prompts, weights: str, cross_replace: float, self_replace: float, inversion=None
    ) -> io.NodeOutput:
        state = edit_state(model)
        if state is not None:
            check_same_prompts(state.prompts, prompts)
        if state is None or not state.plan.targets:  # no edit yet (or only a map recorder): re-weight alone
            plan = refine_plan(prompts, cross_replace, self_replace)
        else:
            plan = state.plan
        edited = apply_edit(model, prompts, reweighted_plan(plan, prompts, weights))
        return io.NodeOutput(pin_source(edited, inversion))
