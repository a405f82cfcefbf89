"""The engine: one group of members, trained inside compiled programs.

A *group* shares array shapes (model, batch size, data); its state is one tree
with a leading member axis, its hyperparameters ``[members]`` arrays. Modules:
``spec`` (the static settings and the state), ``hparams`` (hyperparameters as
data, the members' keys), ``optimizer`` (LR and optimizer of a step), ``step``
(one member's init, step, evaluation and control), ``probe_steps``,
``member_axis`` (the strategies), ``group`` (the compiled functions and the
step loop), ``device_data``, ``caches`` and ``auto`` (the measured strategy).
"""

# fmt: off
# ruff: noqa: I001  (one line per module: the face stays a screen long)
from jaxbatch.data import normalize
from jaxbatch.engine.auto import auto_strategy, default_candidates, pick_strategy, time_strategy  # noqa: E501
from jaxbatch.engine.caches import cache_dir, enable_compilation_cache
from jaxbatch.engine.device_data import device_eval_data, device_train_data
from jaxbatch.engine.group import GroupFns, concat_metrics, eval_members, fetch, group_fns, member_fn, run_steps  # noqa: E501
from jaxbatch.engine.hparams import HPARAM_DEFAULTS, pad_members, stack_hparams
from jaxbatch.engine.member_axis import host_loop, make_mesh, member_multiple, over_members, replicate  # noqa: E501
from jaxbatch.engine.optimizer import learning_rate, make_tx, unit_lr
from jaxbatch.engine.probe_steps import batch_metric, noise_probe, sharpness_probe
from jaxbatch.engine.spec import MemberState, TrainSpec, check_placement
from jaxbatch.engine.step import eval_batch, init_member, train_step, update_control
