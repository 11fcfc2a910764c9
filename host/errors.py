"""The one error type the pack reports to the user, and the checks every node shares."""

from __future__ import annotations

from ..p2p_core.tokens import PromptSet


class UserError(ValueError):
    """A bad input or graph, reported to the user as is."""


def check_same_prompts(on_model: PromptSet, given: PromptSet) -> None:
    """A UserError unless `given` are the prompts of the P2P nodes already on the model."""
    if given != on_model:
        raise UserError(
            "the prompts differ from those of the P2P nodes already on the model: connect the same PromptPair "
            "to every P2P node"
        )
