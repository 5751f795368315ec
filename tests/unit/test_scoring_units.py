"""Shard planning arithmetic, probability mapping by class label, and settings validation (no database)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import MODEL_INPUT_COLUMNS
from segmentation.config import get_settings
from segmentation.errors import ConfigError, ModelError
from segmentation.scoring import predict_frame, shard_count
from segmentation.tasks.score import worker_identity


@pytest.mark.parametrize(
    ("rows", "size", "cap", "expected"),
    [(0, 100, 1024, 0), (1, 100, 1024, 1), (100, 100, 1024, 1), (101, 100, 1024, 2), (10**9, 1, 1024, 1024)],
)
def test_shard_count(rows: int, size: int, cap: int, expected: int) -> None:
    assert shard_count(rows, size, cap) == expected


class FixedModel:
    """A stand-in classifier whose classes are deliberately not in A-D order."""

    classes_ = np.array(["C", "A", "D", "B"])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        assert list(X.columns) == list(MODEL_INPUT_COLUMNS)
        return np.tile([0.1, 0.2, 0.3, 0.4], (len(X), 1))


def features(n: int = 2) -> pd.DataFrame:
    frame = pd.DataFrame({c: [1.0] * n for c in MODEL_INPUT_COLUMNS})
    frame.insert(0, "customer_id", range(1, n + 1))
    return frame.assign(extra="ignored")


def test_probabilities_are_mapped_by_class_label_not_position() -> None:
    out = predict_frame(FixedModel(), features())
    assert out[["p_a", "p_b", "p_c", "p_d"]].iloc[0].tolist() == [0.2, 0.4, 0.1, 0.3]
    assert out["segment"].tolist() == ["B", "B"]
    assert out["customer_id"].tolist() == [1, 2]


def test_missing_model_columns_are_named() -> None:
    with pytest.raises(ModelError, match="spending_rank"):
        predict_frame(FixedModel(), features().drop(columns=["spending_rank"]))


def test_a_model_with_other_classes_is_refused() -> None:
    model = FixedModel()
    model.classes_ = np.array(["A", "B", "X", "D"])
    with pytest.raises(ModelError, match="not the segments"):
        predict_frame(model, features())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REJECT_THRESHOLD", "1.5", "out of range"),
        ("REJECT_THRESHOLD", "lots", "not a float"),
        ("SHARD_SIZE", "0", "out of range"),
        ("MAX_SHARDS", "5000", r"expected 1\.\.1024"),
    ],
)
def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(f"SEGMENTATION_{name}", value)
    with pytest.raises(ConfigError, match=f"SEGMENTATION_{name}.*{message}"):
        get_settings()


def test_worker_identity_names_the_worker_and_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENTATION_WORKER_NAME", raising=False)
    assert worker_identity(get_settings()) == f"{socket.gethostname()}:{os.getpid()}"
    monkeypatch.setenv("SEGMENTATION_WORKER_NAME", "  worker-2 ")
    assert worker_identity(get_settings()) == f"worker-2:{os.getpid()}"
