"""A sweep: member recipes -> shape groups -> training -> results directory.

``run(config)`` is the whole of it (:mod:`~jaxbatch.sweep.runner`). Modules by
job: ``plan`` (members into groups), ``inputs`` (the data on the device),
``rundir`` (the results directory and ``config.json``), ``cost``, ``state``
(what the runner and the hooks share), ``hooks`` (the protocol) and the hooks
themselves (``measurements``, ``control``, ``records``), ``group`` (training
one group), ``tables`` (``members.csv``, ``history.csv``, ``arms.csv``).
"""

from jaxbatch.columns import HISTORY_COLUMNS, RECIPE_COLUMNS, RESULT_COLUMNS
from jaxbatch.config import SweepConfig
from jaxbatch.engine.caches import enable_compilation_cache
from jaxbatch.sweep.hooks import Columns, Hook
from jaxbatch.sweep.inputs import device_data, load_data
from jaxbatch.sweep.measurements import MemberMetric, member_metric
from jaxbatch.sweep.plan import GroupPlan, member_hparams, plan_groups
from jaxbatch.sweep.rundir import default_out
from jaxbatch.sweep.runner import run
