"""The sweep's configuration: one schema, in sections that validate themselves.

Every field is declared once, in its section, with its type, default and help text. The
command line (``jaxbatch.cli``), ``config.json`` and the resume check all
derive from these declarations: adding a field here adds its flag, its
``--help`` line and its place in ``config.json``.

Sections: :class:`DataConfig`, :class:`ModelConfig` (``network``),
:class:`MembersConfig`
(the grid or list of member recipes), :class:`RecipeConfig` (defaults of every
member's recipe), :class:`OptimConfig`, :class:`ControlConfig`,
:class:`EvalConfig` and :class:`ExecConfig`. Field names are unique across
sections, so ``SweepConfig(lrs=(0.1,), epochs=5)`` routes each keyword to its
section.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

from jaxbatch import models, optim, recipes
from jaxbatch.config.members import CROSSABLE, MembersConfig
from jaxbatch.config.schema import (
    OPTION_EXAMPLES,
    ControlConfig,
    DataConfig,
    EvalConfig,
    ExecConfig,
    ModelConfig,
    OptimConfig,
    PopulationConfig,
    RecipeConfig,
    must_be_one_of,
    parse_options,
)  # fmt: skip

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "network": ModelConfig,
    "members": MembersConfig,
    "recipe": RecipeConfig,
    "optim": OptimConfig,
    "control": ControlConfig,
    "population": PopulationConfig,
    "evaluation": EvalConfig,
    "execution": ExecConfig,
}
# field name -> section name (names are unique across sections)
FIELD_SECTION: dict[str, str] = {
    f.name: section
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
}


def _check_unique_names():
    seen = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise AssertionError(f"{f.name} in {seen[f.name]} and {section}")
            seen[f.name] = section


_check_unique_names()

# Old flat names kept working (``--schedule step`` is a one-value list).
_ALIASES = {
    "schedule": "schedules",
    "weight_decay_mode": "weight_decay_modes",
}


def _normalize(name: str, value):
    """Values as the field's type: lists as tuples, dicts as sorted pairs."""
    if name in ("schedules", "weight_decay_modes", "models") and isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if name in ("lr_multipliers", "model_kwargs") and isinstance(value, Mapping):
        return tuple(value.items())
    if name in OPTION_EXAMPLES:
        if isinstance(value, str):
            return parse_options(value, OPTION_EXAMPLES[name])
        if isinstance(value, Mapping):
            return tuple(value.items())
    if name == "recipes":
        return tuple(
            v if isinstance(v, recipes.Member) else recipes.Member.from_dict(v)
            for v in value
        )
    if name == "model_options" and isinstance(value, Mapping):
        return tuple((k, _normalize("model_kwargs", v)) for k, v in value.items())
    return _tuples(value)


def _tuples(value):
    """Lists (from JSON) as tuples, recursively; other values as they are."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _twins(a: recipes.Member, b: recipes.Member, m: recipes.Member, i, j) -> str:
    """Why members ``i`` and ``j`` (as listed: ``a``, ``b``; resolved: ``m``)
    would train identical twins: a field they differ in that the optimizer
    or schedule ignores, if any."""
    ignored = [f for f in recipes.unused(m) if getattr(a, f) != getattr(b, f)]
    if ignored:
        f = ignored[0]
        return (
            f"members {i} and {j} differ only in {f} ({getattr(a, f)!r} vs "
            f"{getattr(b, f)!r}), which {recipes.unused_because(f, [m])} does not "
            "use: they would train "
            f"identical twins; vary {f} only where it acts"
        )
    return (
        f"members {i} and {j} are identical ({recipes.describe(m)}): they would "
        "train twins; change a value (e.g. the seed) or drop one"
    )


class SweepConfig:
    """Everything that defines a sweep, in sections (see the module docstring).

    Build it from flat keywords, ``SweepConfig(model="mlp", lrs=(0.1, 0.3))``,
    or from sections, ``SweepConfig(data=DataConfig(...))``. Every field reads
    back as an attribute (``config.epochs``). Immutable and hashable; validated
    on construction, before any data is loaded or anything compiles.

    Explicit members (``recipes``, or a members file) are crossed with every
    grid list given beside them: ``SweepConfig(recipes=arms, seeds=(0, 1, 2))``
    trains each arm at 3 seeds, and a member that sets its own seed keeps it;
    lists left at their defaults are not crossed (an unset field takes the
    list's first value). ``recipes`` may also be a function of the given
    values, ``fn(values) -> members`` (e.g. LRs scaled to ``batch_sizes``).
    """

    __slots__ = ("experiment", *SECTIONS)

    def __init__(self, *, experiment: str = "sweep", **values):
        object.__setattr__(self, "experiment", experiment)
        values = {_ALIASES.get(k, k): v for k, v in values.items()}
        if callable(values.get("recipes")):  # a builder of the given values
            values["recipes"] = tuple(values["recipes"](values))
        if (values.get("recipes") or values.get("members_file")) and (
            "cross" not in values
        ):
            values["cross"] = tuple(f for f in CROSSABLE if f in values)
        flat: dict[str, dict] = {s: {} for s in SECTIONS}
        for key, value in values.items():
            if key in SECTIONS and dataclasses.is_dataclass(value):
                flat[key] = {**dataclasses.asdict(value), **flat[key]}
                continue
            name = _ALIASES.get(key, key)
            if name not in FIELD_SECTION:
                known = ", ".join(sorted(FIELD_SECTION))
                raise ValueError(f"unknown setting {key!r}; known: {known}")
            flat[FIELD_SECTION[name]][name] = _normalize(name, value)
        if "recipes" in flat["members"]:
            flat["members"]["recipes"] = _normalize(
                "recipes", flat["members"]["recipes"]
            )
        for section, cls in SECTIONS.items():
            try:
                obj = cls(**flat[section])
            except TypeError as err:
                raise ValueError(f"{section}: {err}") from None
            object.__setattr__(self, section, obj)
        self.validate()

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __getattr__(self, name):
        section = FIELD_SECTION.get(_ALIASES.get(name, name))
        if section is None:
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, section), _ALIASES.get(name, name))

    def model_list(self) -> tuple[str, ...]:
        return self.network.model_list()

    def kwargs_for(self, name: str):
        return self.network.kwargs_for(name)

    def replace(self, **changes) -> SweepConfig:
        """A copy with some fields (flat names or sections) changed."""
        flat = self.flat()
        flat.update(changes)
        return SweepConfig(**flat)

    def flat(self) -> dict:
        out = {"experiment": self.experiment}
        for section in SECTIONS:
            obj = object.__getattribute__(self, section)
            out.update({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
        return out

    def validate(self) -> None:
        """Every section's values and every member's; plain Python, so nothing
        starts JAX (a random search's draws are checked at their ranges' ends
        and drawn when the sweep plans its groups)."""
        for section in SECTIONS:
            object.__getattribute__(self, section).validate()
        h = self.population.halving
        if h is not None and h["first"] >= self.epochs:
            raise ValueError(
                f"successive_halving first={h['first']} is not before the last "
                f"epoch ({self.epochs} epochs): no member would be dropped; give "
                f"first below {self.epochs}, or more --epochs"
            )
        p = self.population.exploit
        if p is not None and p["interval"] >= self.epochs:
            raise ValueError(
                f"pbt interval={p['interval']} is not before the last epoch "
                f"({self.epochs} epochs): no member would be exploited; give "
                f"interval below {self.epochs}, or more --epochs"
            )
        if self.population.hyperband:
            self._check_hyperband()
        if self.members.drawn() or self.population.hyperband:
            n = self._check_random_search()
        else:
            n = len(self.resolved_members())  # every member checks its own values
        bad = [m for m in self.interpolate if not 0 <= m < n]
        if bad:
            raise ValueError(
                f"interpolate names members {bad}, but the sweep has members "
                f"0..{n - 1}; name two of them, e.g. --interpolate 0,{n - 1}"
            )

    # --- members -------------------------------------------------------------

    def resolve(self, member: recipes.Member, index: int) -> recipes.Member:
        """A member with every unset field taken from the sweep's defaults."""
        rc = self.recipe
        oc = self.optim
        ev = self.evaluation
        mc = self.members
        # Recipe defaults: the RecipeConfig field of the same name, the first
        # value of a grid list, or a setting of another section.
        defaults = {f.name: getattr(rc, f.name) for f in dataclasses.fields(rc)}
        defaults.update(
            model=self.model_list()[0],
            batch_size=mc.batch_sizes[0] if mc.batch_sizes else None,
            lr=mc.lrs[0] if mc.lrs else None,
            schedule=mc.schedules[0] if mc.schedules else "step",
            optimizer=oc.optimizer,
            momentum=mc.momentums[0] if mc.momentums else 0.9,
            weight_decay=mc.weight_decays[0] if mc.weight_decays else 0.0,
            weight_decay_mode=(mc.weight_decay_modes or ("l2",))[0],
            seed=mc.seeds[0] if mc.seeds else 0,
        )
        values = {k: v for k, v in member.to_dict().items() if k != "tags"}
        m = member.replace(**{**defaults, **values})
        if m.decay_epochs is None:
            m = m.replace(decay_epochs=ev.epochs / 2)
        m = m.replace(augment=recipes.augment_text(m.augment or ""))
        if m.weight_decay_end is None or m.weight_decay_schedule == "constant":
            m = m.replace(weight_decay_end=m.weight_decay)
        own = dict(m.lr_multipliers or ())
        mults = {**dict(oc.lr_multipliers), **own, **{p: 0.0 for p in oc.freeze}}
        m = m.replace(lr_multipliers=tuple(mults.items()))
        if m.plateau_factor is None:
            m = m.replace(plateau_factor=0.5 if m.schedule == "plateau" else 1.0)
        if m.optimizer == "adamw":  # AdamW is Adam with decoupled decay
            m = m.replace(optimizer="adam", weight_decay_mode="decoupled")
        if m.optimizer == "adam":  # Adam has no momentum buffer (its b1 is one)
            m = m.replace(momentum=0.0)
        if m.model not in models.available_models():
            raise ValueError(
                f"member {index}: unknown model {m.model!r}; choose one of "
                f"{', '.join(models.available_models())}"
            )
        must_be_one_of("optimizer", m.optimizer, optim.OPTIMIZERS)
        must_be_one_of(
            "weight_decay_mode", m.weight_decay_mode, optim.WEIGHT_DECAY_MODES
        )
        recipes.check(m)
        return m

    def _check_random_search(self) -> int:
        """Check a random search without drawing it; returns its member count."""
        mc = self.members
        corners = mc.random_corners(self.model_list())
        for i, m in enumerate(corners):
            self.resolve(m, i)
        drawn = mc.drawn() or sum(
            b["n"] for b in self.population.brackets(self.epochs)
        )  # fmt: skip
        n = len(corners) // 2 * drawn
        degenerate = all(lo == hi for lo, hi in (
            mc.lr_range, mc.weight_decay_range, mc.momentum_range))  # fmt: skip
        if degenerate and drawn > 1:
            raise ValueError(
                f"search {mc.search} draws {drawn} identical members: every "
                "range is a single value; widen --lr-range (or another range)"
            )
        return n

    def _check_hyperband(self) -> None:
        """Hyperband draws its brackets' members itself (from the random
        search's ranges), over at least two brackets."""
        mc, b = self.members, self.population.bands
        if mc.recipes or mc.members_file or mc.random_count():
            given = ("recipes" if mc.recipes else "--members" if mc.members_file
                     else f"--search {mc.search}")  # fmt: skip
            raise ValueError(
                f"hyperband draws its own members (its brackets' random draws, "
                f"from --lr-range, --weight-decay-range, --momentum-range); leave "
                f"out {given}"
            )
        if self.epochs < b["min"] * b["eta"]:
            raise ValueError(
                f"hyperband with min={b['min']} and eta={b['eta']:g} needs at least "
                f"{math.ceil(b['min'] * b['eta'])} epochs for two brackets, got "
                f"{self.epochs}; give more --epochs or a smaller eta"
            )

    def resolved_members(self) -> list[recipes.Member]:
        """Every member with its full recipe; refuses an empty list and twins.

        A recipe listed again with other tags (a baseline two arms share: the
        batch-16 start of "same LR" and of "linear scaling") is no twin: it
        trains once and is a member of each arm (:meth:`shared_members`).
        Listed again with the same tags, or differing only in a field its
        optimizer or schedule ignores, it is refused."""
        mc = self.members
        brackets = self.population.brackets(self.epochs)
        if brackets:
            raw = mc.hyperband(self.model_list(), brackets)
        else:
            raw = mc.members(self.model_list())
        members = [self.resolve(m, i) for i, m in enumerate(raw)]
        if not members:
            raise ValueError("the sweep has no members")
        seen: dict = {}
        for i, m in enumerate(members):
            for j in seen.setdefault(recipes.comparable(m), []):
                ignored = [f for f in recipes.unused(m)
                           if getattr(raw[j], f) != getattr(raw[i], f)]  # fmt: skip
                if ignored or members[j].tags == m.tags:
                    raise ValueError(_twins(raw[j], raw[i], m, j, i))
            seen[recipes.comparable(m)].append(i)
        return members

    def shared_members(self) -> dict[int, int]:
        """``{member: the member it trains with}`` for every member whose
        recipe an earlier member (other tags) already trains."""
        first: dict = {}
        out = {}
        for i, m in enumerate(self.resolved_members()):
            j = first.setdefault(recipes.comparable(m), i)
            if j != i:
                out[i] = j
        return out

    # --- serialization -----------------------------------------------------------

    def to_dict(self) -> dict:
        d = {"experiment": self.experiment}
        for section in SECTIONS:
            obj = object.__getattribute__(self, section)
            sd = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.name in ("model_kwargs", "lr_multipliers"):
                    value = dict(value)
                elif f.name == "model_options":
                    value = {name: dict(kw) for name, kw in value}
                elif f.name == "recipes":
                    value = [m.to_dict() for m in value]
                sd[f.name] = value
            d[section] = sd
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping) -> SweepConfig:
        """The config of ``to_dict()`` (e.g. read back from ``config.json``;
        one written before ``cross`` existed crosses nothing)."""
        flat = {"experiment": d.get("experiment", "sweep"), "cross": ()}
        for section in SECTIONS:
            for name, value in dict(d.get(section) or {}).items():
                if name == "model_kwargs":
                    value = tuple(sorted((k, _tuples(v)) for k, v in value.items()))
                elif name == "model_options":
                    value = tuple(
                        (n, tuple(sorted((k, _tuples(v)) for k, v in kw.items())))
                        for n, kw in value.items()
                    )
                flat[name] = value
        return cls(**flat)

    def __eq__(self, other):
        return isinstance(other, SweepConfig) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        return f"SweepConfig({self.to_dict()!r})"
