"""Socket types the pack adds to ComfyUI, its node category, and the one place a node's name joins an error."""

from __future__ import annotations

import functools
from collections.abc import Callable

from comfy_api.latest import io

from ..host.errors import UserError

P2PPrompts = io.Custom("P2P_PROMPTS")
"""A PromptSet: the source and target prompts as the model tokenized them."""

P2PInversion = io.Custom("P2P_INVERSION")
"""A p2p_core.inversion.Trajectory: the states of an inversion, per sigma, in the sampler's space."""

CATEGORY = "Prompt-to-Prompt"


def names_errors(execute: classmethod) -> classmethod:
    """Wrap a node's `execute` classmethod: a bad input (a UserError of host/, or the ValueError that p2p_core
    raises for one) reaches the user as a UserError starting with the node's display name."""
    function: Callable = execute.__func__

    @functools.wraps(function)
    def named(cls, *args, **kwargs) -> io.NodeOutput:
        try:
            return function(cls, *args, **kwargs)
        except ValueError as error:
            raise UserError(f"{cls.define_schema().display_name}: {error}") from None

    return classmethod(named)
