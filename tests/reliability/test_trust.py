"""Signed model artifacts: a replaced artifact is refused before it is unpickled, and nothing is scored."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import joblib
import pytest

from segmentation import registry, signing, tasks
from segmentation.cli import main
from segmentation.config import get_settings
from segmentation.db import connect, reset_url_cache
from segmentation.errors import ConfigError, ModelError
from tests.helpers import execute, load_generated, scalar

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
        with connect() as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
            registry.load_model(cur, trained, directory)
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
    with connect() as conn, conn.cursor() as cur:
        assert registry.load_model(cur, trained, evaluation=True) is not None
    marker = tmp_path / "eval-marker"
    payload = _payload_bytes(marker)
    execute(
        "UPDATE segmentation.model_versions SET eval_artifact = %s, eval_sha256 = %s WHERE version = %s",
        (payload, hashlib.sha256(payload).hexdigest(), trained),
    )
    with connect() as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, trained, evaluation=True)
    assert not marker.exists(), "the replaced evaluation artifact was unpickled"
    with connect() as conn, conn.cursor() as cur:  # the served artifact is untouched and still loads
        assert registry.load_model(cur, trained) is not None


def test_a_signature_from_another_version_or_key_is_refused(trained: int) -> None:
    settings = get_settings()
    with connect() as conn, conn.cursor() as cur:
        registry.load_model(cur, trained, settings.model_cache_dir)  # genuine: loads
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
    with connect() as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, copy)


def test_an_unsigned_version_is_refused_until_an_operator_signs_it(trained: int, capsys) -> None:
    execute("UPDATE segmentation.model_versions SET artifact_hmac = NULL WHERE version = %s", (trained,))
    with connect() as conn, conn.cursor() as cur, pytest.raises(ModelError, match=f"model sign {trained}"):
        registry.load_model(cur, trained)
    assert main(["model", "sign", str(trained)]) == 0
    with connect() as conn, conn.cursor() as cur:
        assert registry.load_model(cur, trained) is not None
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
        signing.signing_key()
    load_generated(100)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert signing.KEY_ENV in err and "Traceback" not in err
    assert scalar("SELECT count(*) FROM segmentation.pipeline_runs") == 0  # refused before the run started
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16"):
        signing.signing_key()


def test_the_embedded_demo_generates_a_private_local_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(signing.KEY_ENV)
    monkeypatch.delenv("SEGMENTATION_DATABASE_URL", raising=False)
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    reset_url_cache()
    key = signing.signing_key()
    path = tmp_path / "data" / signing.LOCAL_KEY_FILE
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signing.signing_key() == key and len(key) >= 32  # created once, then reused


def test_the_embedded_server_named_by_url_counts_as_the_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``make demo`` hands the embedded server's socket URL to Airflow; a URL elsewhere needs the key."""
    from segmentation.db import uses_embedded_server

    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    socket_url = f"postgresql://postgres:@/segmentation?host={tmp_path / 'data' / 'pgdata'}"
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", socket_url)
    assert uses_embedded_server()
    for elsewhere in ("postgresql://postgres:@/segmentation?host=/var/run/postgresql", "postgresql://u@db:5432/s"):
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", elsewhere)
        assert not uses_embedded_server()
