"""The members of a sweep: a grid over lists of values, a log-uniform random
search, a file of recipes, or explicit recipes (research code), and the LR
scaling rule applied to them.

A random search is drawn (with JAX) only when the members are asked for;
validation checks its ranges at both ends instead.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax

from jaxbatch import columns as cols
from jaxbatch import optim, recipes
from jaxbatch.config.schema import (
    field,
    must_be_one_of,
    must_be_positive,
    must_not_be_empty,
)

# The grid lists and the member field each sets.
CROSSABLE = {
    "batch_sizes": "batch_size", "lrs": "lr", "weight_decays": "weight_decay",
    "momentums": "momentum", "seeds": "seed", "schedules": "schedule",
    "weight_decay_modes": "weight_decay_mode", "dropouts": "dropout",
}  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class MembersConfig:
    """The member list: a grid over these axes (or an explicit recipe list)."""

    batch_sizes: tuple[int, ...] = field(
        (32, 64), "comma-separated batch sizes; each is one compiled group"
    )
    lrs: tuple[float, ...] = field(
        (0.01, 0.02), "comma-separated peak learning rates, trained together"
    )
    weight_decays: tuple[float, ...] = field((0.0,), "comma-separated weight decays")
    momentums: tuple[float, ...] = field((0.9,), "comma-separated momentum values")
    seeds: tuple[int, ...] = field(
        (0,), "comma-separated member seeds (init, data order, dropout)"
    )
    schedules: tuple[str, ...] = field(
        ("step",),
        "comma-separated LR schedules, "
        "trained together: " + ", ".join(recipes.SCHEDULE_KINDS),
        flag="--schedule",
    )
    weight_decay_modes: tuple[str, ...] = field(
        ("l2",),
        "comma-separated weight-decay modes, trained together: l2 "
        "(coupled), decoupled (SGDW/AdamW), l1",
        flag="--weight-decay-mode",
    )
    dropouts: tuple[float, ...] = field(
        (),
        "comma-separated dropout rates, trained together in one program "
        "(alexnet, alexnet_small, mlp); default: the model's own rate",
    )
    search: str = field(
        "grid",
        "grid (the product of the lists) or random:N "
        "(N log-uniform draws of LR, weight decay, momentum per "
        "batch size and seed; see --lr-range)",
    )
    lr_range: tuple[float, ...] = field(
        (1e-5, 1e-1), "random search: LR range low,high (log-uniform)"
    )
    weight_decay_range: tuple[float, ...] = field(
        (1e-7, 1e-1), "random search: weight decay range low,high"
    )
    momentum_range: tuple[float, ...] = field(
        (1e-3, 1e-1), "random search: range of 1 - momentum, low,high"
    )
    search_seed: int = field(0, "random search: seed of the draws")
    lr_scaling: str = field(
        "none",
        "scale each LR from --base-batch-size to the "
        "member's batch size: none, linear or sqrt",
    )
    base_batch_size: int | None = field(
        None, "batch size the LRs were tuned at (for --lr-scaling)"
    )
    members_file: str | None = field(
        None,
        "CSV or JSON file, one member per "
        "row/object (columns: any recipe field, e.g. "
        "batch_size,lr,schedule,seed); replaces the grid",
        flag="--members",
    )
    recipes: tuple[recipes.Member, ...] = field(
        (), "explicit member recipes (research code; replaces the grid)", parse="none"
    )
    cross: tuple[str, ...] = field(
        (),
        "grid lists (e.g. seeds, batch_sizes) crossed with the explicit members "
        "(recipes or the members file): a member that leaves the field unset "
        "becomes one member per value; other unset fields take a list's first "
        "value",
        parse="none",
    )

    def validate(self):
        must_be_one_of("lr_scaling", self.lr_scaling, recipes.LR_SCALING_RULES)
        if self.lr_scaling != "none":
            if self.base_batch_size is None:
                raise ValueError("--lr-scaling needs --base-batch-size B")
            must_be_positive("base_batch_size", self.base_batch_size, integer=True)
        bad = [c for c in self.cross if c not in CROSSABLE]
        if bad:
            raise ValueError(
                f"cross names {bad}; it takes grid lists: {', '.join(CROSSABLE)}"
            )
        if self.recipes or self.members_file:
            for name in self.cross:
                must_not_be_empty(name, getattr(self, name))
            return
        for name in ("batch_sizes", "lrs", "weight_decays", "momentums", "seeds",
                     "schedules", "weight_decay_modes"):  # fmt: skip
            must_not_be_empty(name, getattr(self, name))
        for kind in self.schedules:
            must_be_one_of("schedule", kind, recipes.SCHEDULE_KINDS)
        for mode in self.weight_decay_modes:
            must_be_one_of("weight_decay_mode", mode, optim.WEIGHT_DECAY_MODES)
        self.random_count()
        for name in ("lr_range", "weight_decay_range", "momentum_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(
                    f"{name} must be low,high with 0 < low <= high, got {lo_hi}"
                )
        for name in ("batch_sizes", "lrs", "weight_decays", "momentums", "seeds"):
            values = getattr(self, name)
            if self.random_count() and name in ("lrs", "weight_decays", "momentums"):
                continue
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(
                    f"{name} lists {dup} twice: duplicated members would train "
                    "identical twins; give each value once"
                )

    def random_count(self) -> int:
        """N of ``search="random:N"``, 0 for a grid."""
        if self.search == "grid":
            return 0
        kind, _, n = self.search.partition(":")
        if kind != "random" or not n.isdigit() or int(n) < 1:
            raise ValueError(
                f"search must be 'grid' or 'random:N', got {self.search!r}"
            )
        return int(n)

    def drawn(self) -> int:
        """N when the members are ``N`` random draws per cell, else 0."""
        return 0 if self.recipes or self.members_file else self.random_count()

    def _random_cells(self):
        """The (batch size, seed, schedule, mode) cells of a random search;
        each draws the same ``N`` configurations."""
        return itertools.product(
            self.batch_sizes, self.seeds, self.schedules, self.weight_decay_modes
        )

    def _draw(self, model: str, cell, n: int) -> list[recipes.Member]:
        """``n`` random draws of one (batch size, seed, schedule, mode) cell."""
        bs, seed, kind, mode = cell
        return recipes.random(
            jax.random.PRNGKey(self.search_seed), n,
            lr_range=tuple(self.lr_range),
            weight_decay_range=tuple(self.weight_decay_range),
            one_minus_momentum_range=tuple(self.momentum_range),
            model=model, batch_size=bs, seed=seed, schedule=kind,
            weight_decay_mode=mode,
        )  # fmt: skip

    def random_corners(self, model_list: tuple[str, ...]) -> list[recipes.Member]:
        """Two members per cell of a random search, at the low and the high end
        of every range: what validation checks instead of the draws, which
        would start JAX."""
        (lr_lo, lr_hi), (wd_lo, wd_hi), (m_lo, m_hi) = (
            self.lr_range,
            self.weight_decay_range,
            self.momentum_range,
        )
        ends = [(lr_lo, wd_lo, 1 - m_hi), (lr_hi, wd_hi, 1 - m_lo)]
        return [
            recipes.Member(
                model=name, batch_size=bs, seed=seed, schedule=kind,
                weight_decay_mode=mode, lr=recipes.round_draw(lr),
                weight_decay=recipes.round_draw(wd), momentum=recipes.round_draw(m),
            )
            for name in model_list
            for bs, seed, kind, mode in self._random_cells()
            for lr, wd, m in ends
        ]  # fmt: skip

    def members(self, model_list: tuple[str, ...]) -> list[recipes.Member]:
        """The member list (models outermost), before defaults are filled in."""
        if self.recipes:
            base = list(self.recipes)
        elif self.members_file:
            table = (*cols.IDENTITY_COLUMNS, *cols.RECIPE_COLUMNS, *cols.RESULT_COLUMNS)
            base = recipes.read_members_file(self.members_file, reserved=table)
        else:
            base = None
        if base is not None:
            out = self._crossed(base)
            if len(model_list) > 1:
                out = [m if m.model else m.replace(model=name)
                       for name in model_list for m in out]  # fmt: skip
            return self._scaled(out)
        out = []
        n = self.random_count()
        for name in model_list:
            if n:
                for cell in self._random_cells():
                    out += self._draw(name, cell, n)
            else:
                extra = {"dropout": self.dropouts} if self.dropouts else {}
                out += recipes.grid(
                    model=name, batch_size=self.batch_sizes, lr=self.lrs,
                    weight_decay=self.weight_decays, momentum=self.momentums,
                    schedule=self.schedules, weight_decay_mode=self.weight_decay_modes,
                    **extra, seed=self.seeds,
                )  # fmt: skip
        return self._scaled(out)

    def hyperband(
        self, model_list: tuple[str, ...], brackets: list[dict]
    ) -> list[recipes.Member]:
        """Hyperband's members: in every cell of the random search, the
        brackets' draws (``sum(n)`` of them, drawn as ``random:sum(n)``),
        the first ``n`` of bracket s_max, the next of the next, tagged
        ``bracket``."""
        total = sum(b["n"] for b in brackets)
        tags = [b["bracket"] for b in brackets for _ in range(b["n"])]
        out = []
        for name in model_list:
            for cell in self._random_cells():
                drawn = self._draw(name, cell, total)
                out += [m.with_tags(bracket=t) for m, t in zip(drawn, tags)]
        return self._scaled(out)

    def _crossed(self, members: list[recipes.Member]) -> list[recipes.Member]:
        """Each explicit member crossed with the :attr:`cross` lists for the
        fields it leaves unset (the member's own order outermost)."""
        for name in self.cross:
            key, values = CROSSABLE[name], getattr(self, name)
            out = []
            for m in members:
                if getattr(m, key) is None:
                    out += [m.replace(**{key: v}) for v in values]
                else:
                    out.append(m)
            members = out
        return members

    def _scaled(self, members: list[recipes.Member]) -> list[recipes.Member]:
        if self.lr_scaling == "none":
            return members
        defaults = {"lr": self.lrs[0], "batch_size": self.batch_sizes[0]}
        filled = [
            m.replace(**{k: v for k, v in defaults.items() if getattr(m, k) is None})
            for m in members
        ]
        return recipes.scale_lr(filled, self.lr_scaling, self.base_batch_size)
