"""The sweep's configuration: one schema, in sections that validate themselves.

``schema`` declares the sections' fields (default, help text, validation),
``members`` the member list, ``sweep_config`` the :class:`SweepConfig` that
holds them all. Building one starts no JAX.
"""

from jaxbatch.config.members import MembersConfig
from jaxbatch.config.schema import (
    ControlConfig,
    DataConfig,
    EvalConfig,
    ExecConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    field,
)  # fmt: skip
from jaxbatch.config.sweep_config import FIELD_SECTION, SECTIONS, SweepConfig
