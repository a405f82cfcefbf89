"""Matplotlib figures from a results directory.

Every function takes a results directory (or the arrays read from it), builds
its own ``fig, ax`` and returns the ``Figure``; nothing here calls
``plt.show()``. ``standard`` holds the figures every sweep gets
(:func:`save_all`), ``facets`` the builder the experiments call with field
names (:func:`facet`) and ``heatmap`` its two-field grid, ``style`` what they
share; ``comparisons``, ``search`` and ``special`` the few figures no facet
expresses.
"""

from jaxbatch.plots.facets import facet
from jaxbatch.plots.heatmap import grid_fields, heatmap
from jaxbatch.plots.standard import (
    accuracy_curves,
    accuracy_vs,
    loss_curves,
    model_comparison,
    save_all,
    summary,
)  # fmt: skip
from jaxbatch.plots.style import (
    MAX_LEGEND,
    MIN_BAND,
    Colors,
    clip_to,
    label_of,
    load,
    save_figures,
    train_images,
)  # fmt: skip
