"""The sweep's data: the dataset its settings name, and its arrays on the device.

Every group of a sweep trains on the same data with the same device count and
evaluation batch size, so the (possibly GB-sized) transfer happens once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from jaxbatch import data
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.engine.device_data import device_eval_data, device_train_data
from jaxbatch.engine.member_axis import replicate
from jaxbatch.engine.spec import TrainSpec


def load_data(config: SweepConfig) -> data.Dataset:
    """The dataset a sweep's data settings name (its train/validation split)."""
    return config.data.load()


@dataclasses.dataclass(frozen=True)
class DeviceData:
    """``train``: the training set (:func:`device_train_data`); ``evals``: the
    evaluation sets ``val``, ``train_eval`` (a fixed, seeded subset of the
    training set, evaluated with the final parameters) and ``test``, each in
    padded batches (:func:`device_eval_data`)."""

    train: Mapping
    evals: Mapping


def device_data(ds: data.Dataset, spec: TrainSpec, config: SweepConfig) -> DeviceData:
    """The data on the device(s), shared by all groups (see :class:`DeviceData`)."""
    train = device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)

    def ev(x, y):
        bs = min(spec.eval_batch_size, len(x))
        return replicate(device_eval_data(x, y, ds.mean, ds.std, bs), spec)

    n = min(config.train_eval_size or len(ds.x_val), len(ds.x_train))
    rng = np.random.default_rng(config.data_seed)
    subset = np.sort(rng.permutation(len(ds.x_train))[:n])
    evals = {
        "val": ev(ds.x_val, ds.y_val),
        "train_eval": ev(ds.x_train[subset], ds.y_train[subset]),
    }
    if config.test and ds.x_test is not None:
        evals["test"] = ev(ds.x_test, ds.y_test)
    return DeviceData(replicate(train, spec), evals)
