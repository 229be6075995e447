"""The typed option schema (`TrainConfig`, the only source of defaults; its fields are the CLI
flags, the TOML keys and the `Recommender` keywords) and the default recipe."""

from negspace.config.recipe import (DEFAULT_RECIPE, FULL_SOFTMAX_MAX_CELLS, FULL_SOFTMAX_MAX_ITEMS,
                                    RECIPE_CHOICES, SMALL_DATA_MAX_CELLS, resolve_for_data,
                                    with_default_recipe)
from negspace.config.schema import (BY_SIZE, COMBINATIONS_HELP, LOSSES, MACHINE_OPTIONS, MODELS,
                                    SAMPLER_NAMES, TrainConfig, config_fields, load_toml, make_config,
                                    normalise_keys)

__all__ = ["BY_SIZE", "COMBINATIONS_HELP", "DEFAULT_RECIPE", "FULL_SOFTMAX_MAX_CELLS",
           "FULL_SOFTMAX_MAX_ITEMS", "LOSSES", "MACHINE_OPTIONS", "MODELS", "RECIPE_CHOICES", "SAMPLER_NAMES",
           "SMALL_DATA_MAX_CELLS", "TrainConfig", "config_fields", "load_toml", "make_config",
           "normalise_keys", "resolve_for_data", "with_default_recipe"]
