"""Signed model artifacts: a replaced artifact is refused before it is unpickled, and nothing is scored."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from segmentation import registry, signing, tasks
from segmentation.cli import main
from segmentation.columns import MODEL_INPUT_COLUMNS, PROBABILITY_COLUMNS, SEGMENTS
from segmentation.config import get_settings
from segmentation.db import connect, reset_url_cache
from segmentation.errors import ConfigError, ModelError
from segmentation.scoring import FEATURE_COLUMNS_SQL, read_features
from tests.helpers import current_settings, db_url, execute, load_generated, model_key, query, scalar

pytestmark = pytest.mark.db


class _Payload:
    """An object whose unpickling creates a file: what an attacker's artifact would run on every worker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _payload_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(_Payload(marker), buffer)
    return buffer.getvalue()


def _scored_sample(cur: Any, version: int, rows: int = 25) -> tuple[pd.DataFrame, np.ndarray]:
    """The features of a few customers that the nightly run scored with ``version``, read as scoring reads
    them, and the probabilities (p_a..p_d) it stored for them."""
    features = read_features(
        cur,
        f"""SELECT {FEATURE_COLUMNS_SQL} FROM segmentation.customer_features AS f
            JOIN segmentation.customer_segments AS s USING (customer_id)
            WHERE s.model_version = %(version)s AND s.source_updated_at = f.source_updated_at
            ORDER BY f.customer_id LIMIT %(rows)s""",
        {"version": version, "rows": rows},
    )
    assert len(features) == rows, f"fewer than {rows} customers scored by version {version}"
    cur.execute(
        f"""SELECT {", ".join(PROBABILITY_COLUMNS)} FROM segmentation.customer_segments
            WHERE customer_id = ANY(%s) ORDER BY customer_id""",
        ([int(i) for i in features["customer_id"]],),
    )
    return features, np.array(cur.fetchall(), dtype=float)


def _probabilities(model: Any, features: pd.DataFrame) -> np.ndarray:
    """``model``'s probabilities of the segments A..D (columns in that order); its classes must be them."""
    classes = [str(c) for c in model.classes_]
    assert sorted(classes) == list(SEGMENTS), classes
    proba = model.predict_proba(features.loc[:, list(MODEL_INPUT_COLUMNS)])
    return proba[:, [classes.index(segment) for segment in SEGMENTS]]


def _registered(version: int, kind: str = "artifact") -> Any:
    """The pipeline registered as version ``version``'s ``kind`` (``artifact``: served, ``eval_artifact``:
    evaluation), unpickled straight from its bytes in model_versions once they match its registered sha256."""
    sha_column = {"artifact": "sha256", "eval_artifact": "eval_sha256"}[kind]
    data, sha256 = query(
        f"SELECT {kind}, {sha_column} FROM segmentation.model_versions WHERE version = %s", (version,)
    )[0]
    assert hashlib.sha256(bytes(data)).hexdigest() == sha256.strip()
    return joblib.load(io.BytesIO(bytes(data)))


def _assert_scores_as_registered(cur: Any, model: Any, version: int) -> None:
    """``model`` is version ``version``'s served pipeline: on customers that the nightly run scored with that
    version it predicts what the registered artifact predicts, and the very probabilities stored for them."""
    features, stored = _scored_sample(cur, version)
    loaded = _probabilities(model, features)
    np.testing.assert_array_equal(loaded, _probabilities(_registered(version), features))
    np.testing.assert_allclose(loaded, stored, rtol=1e-9, atol=1e-12)


@pytest.fixture
def trained(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A champion trained and signed by a nightly run over 1,200 customers; returns its version."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_DRIFT_THRESHOLD", "100")  # no drift retrain in between
    load_generated(1200, labelled_share=0.6)
    tasks.run_nightly("signed-night")
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


def test_an_artifact_and_sha256_replaced_together_are_refused_before_unpickling(trained: int, tmp_path: Path) -> None:
    # The payload is live: unpickling it does create its marker file.
    control = tmp_path / "control-marker"
    joblib.load(io.BytesIO(_payload_bytes(control)))
    assert control.exists()

    marker = tmp_path / "attacker-marker"
    payload = _payload_bytes(marker)
    # Someone with UPDATE on model_versions replaces the artifact and its sha256 together.
    execute(
        "UPDATE segmentation.model_versions SET artifact = %s, sha256 = %s WHERE version = %s",
        (payload, hashlib.sha256(payload).hexdigest(), trained),
    )
    segments_before = scalar(
        "SELECT md5(string_agg(customer_id || segment, ',' ORDER BY customer_id)) FROM segmentation.customer_segments"
    )
    load_generated(300, seed=7, start_id=50_001, labelled_share=0.0)
    cache = get_settings().model_cache_dir
    for directory in (None, cache):  # with and without a worker's local cache (emptied: a fresh worker)
        if directory is not None and directory.exists():
            for cached in directory.iterdir():
                cached.unlink()
        with (
            connect(db_url()) as conn,
            conn.cursor() as cur,
            pytest.raises(ModelError, match="fails its signature check"),
        ):
            registry.load_model(cur, trained, directory, key=model_key())
    with pytest.raises(ModelError, match="fails its signature check"):
        tasks.run_nightly("after-tamper")
    assert not marker.exists(), "the replaced artifact was unpickled"
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE run_id = 'after-tamper'") == 0
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE customer_id >= 50001") == 0
    assert (
        scalar(
            "SELECT md5(string_agg(customer_id || segment, ',' ORDER BY customer_id)) "
            "FROM segmentation.customer_segments"
        )
        == segments_before
    )


def test_a_replaced_evaluation_artifact_is_refused_before_unpickling(trained: int, tmp_path: Path) -> None:
    # The gate unpickles the evaluation model, so it is signed and checked like the served one.
    assert scalar("SELECT count(*) FROM segmentation.model_versions WHERE eval_artifact_hmac IS NOT NULL") == 1
    registered_eval = _registered(trained, "eval_artifact")  # genuine: the bytes the run registered
    with connect(db_url()) as conn, conn.cursor() as cur:
        loaded = registry.load_model(cur, trained, evaluation=True, key=model_key())
        features, _ = _scored_sample(cur, trained)
    # The evaluation model as registered (the same bytes predict the same), not the served one.
    evaluated = _probabilities(loaded, features)
    np.testing.assert_array_equal(evaluated, _probabilities(registered_eval, features))
    served = _probabilities(_registered(trained), features)
    assert np.abs(evaluated - served).max() > 1e-6, "the served model was loaded as the evaluation model"
    marker = tmp_path / "eval-marker"
    payload = _payload_bytes(marker)
    execute(
        "UPDATE segmentation.model_versions SET eval_artifact = %s, eval_sha256 = %s WHERE version = %s",
        (payload, hashlib.sha256(payload).hexdigest(), trained),
    )
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, trained, evaluation=True, key=model_key())
    assert not marker.exists(), "the replaced evaluation artifact was unpickled"
    with connect(db_url()) as conn, conn.cursor() as cur:  # the served artifact is untouched and still loads
        _assert_scores_as_registered(cur, registry.load_model(cur, trained, key=model_key()), trained)


def test_a_signature_from_another_version_or_key_is_refused(trained: int) -> None:
    settings = get_settings()
    with connect(db_url()) as conn, conn.cursor() as cur:
        _assert_scores_as_registered(
            cur, registry.load_model(cur, trained, settings.model_cache_dir, key=model_key()), trained
        )
        with pytest.raises(ModelError, match="fails its signature check"):
            registry.load_model(cur, trained, None, key=b"another-key-of-sufficient-length")
    # The same bytes copied into a new row keep a signature bound to the old version number.
    execute(
        """INSERT INTO segmentation.model_versions (status, model_name, sha256, artifact, artifact_hmac)
           SELECT 'candidate', model_name, sha256, artifact, artifact_hmac FROM segmentation.model_versions
           WHERE version = %s""",
        (trained,),
    )
    copy = int(scalar("SELECT max(version) FROM segmentation.model_versions"))
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, copy, key=model_key())


def test_an_unsigned_version_is_refused_until_an_operator_signs_it(trained: int, capsys) -> None:
    execute("UPDATE segmentation.model_versions SET artifact_hmac = NULL WHERE version = %s", (trained,))
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match=f"model sign {trained}"):
        registry.load_model(cur, trained, key=model_key())
    assert main(["model", "sign", str(trained)]) == 0
    with connect(db_url()) as conn, conn.cursor() as cur:
        _assert_scores_as_registered(cur, registry.load_model(cur, trained, key=model_key()), trained)
    # A corrupt artifact is never signed.
    execute(
        "UPDATE segmentation.model_versions SET artifact = artifact || '\\x00'::bytea WHERE version = %s", (trained,)
    )
    assert main(["model", "sign", str(trained)]) == 2
    assert "refusing to sign" in capsys.readouterr().err


def test_a_missing_key_is_a_start_up_error_naming_the_variable(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv(signing.KEY_ENV)
    with pytest.raises(ConfigError, match=signing.KEY_ENV):
        signing.signing_key(get_settings())
    load_generated(100)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert signing.KEY_ENV in err and "Traceback" not in err
    assert scalar("SELECT count(*) FROM segmentation.pipeline_runs") == 0  # refused before the run started
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16"):
        signing.signing_key(get_settings())


def test_the_embedded_demo_generates_a_private_local_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(signing.KEY_ENV)
    monkeypatch.delenv("SEGMENTATION_DATABASE_URL", raising=False)
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    reset_url_cache()
    key = signing.signing_key(get_settings())
    path = tmp_path / "data" / signing.LOCAL_KEY_FILE
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signing.signing_key(get_settings()) == key and len(key) >= 32  # created once, then reused


def test_the_embedded_server_named_by_url_counts_as_the_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``make demo`` hands the embedded server's socket URL to Airflow; a URL elsewhere needs the key."""
    from segmentation.db import uses_embedded_server

    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    socket_url = f"postgresql://postgres:@/segmentation?host={tmp_path / 'data' / 'pgdata'}"
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", socket_url)
    assert uses_embedded_server(current_settings())
    for elsewhere in ("postgresql://postgres:@/segmentation?host=/var/run/postgresql", "postgresql://u@db:5432/s"):
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", elsewhere)
        assert not uses_embedded_server(current_settings())
