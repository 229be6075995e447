"""Every model x sampler x loss (x measure, x negative mode) combination the option schema
accepts: what the contract test trains, and what `negspace train --help` summarises."""

from __future__ import annotations

import itertools
from typing import Any

from negspace import registry
from negspace.config.schema import NEGATIVE_MODES, make_config
from negspace.errors import NegspaceError


def allowed_combinations() -> list[dict[str, Any]]:
    """The combinations of the registered models, samplers, losses, score measures and negative
    modes that validate, as TrainConfig values (measure and negative mode only where the model
    or sampler offers a choice).

    Returns:
        One dict per combination, in registry order.
    """
    out = []
    for model, sampler, loss in itertools.product(registry.MODELS, registry.SAMPLERS,
                                                  registry.LOSSES):
        spec = registry.MODELS[model]
        measures = spec.measures if len(spec.measures) > 1 else (None,)
        modes = NEGATIVE_MODES if registry.SAMPLERS[sampler].shared_law else (None,)
        for measure, mode in itertools.product(measures, modes):
            values = {"model": model, "sampler": sampler, "loss": loss}
            if measure is not None:
                values["measure"] = measure
            if mode is not None:
                values["negative_mode"] = mode
            try:
                make_config(values)
            except NegspaceError:
                continue
            out.append(values)
    return out


__all__ = ["allowed_combinations"]
