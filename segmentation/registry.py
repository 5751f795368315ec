"""The model registry in ``model_versions``: artifacts with sha256, metrics, and champion promotion."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation import locks, signing
from segmentation.config import PROJECT_ROOT
from segmentation.errors import ModelError

log = logging.getLogger(__name__)

# The artifact kind named in its signature (other kinds, e.g. an evaluation artifact, sign their own column).
ARTIFACT = "artifact"


@dataclass(frozen=True)
class ModelVersion:
    """A registry row without its artifact bytes."""

    version: int
    status: str
    model_name: str
    sha256: str
    metrics: dict[str, Any]
    created_at: Any


def serialise(model: Any) -> tuple[bytes, str]:
    """The joblib bytes of ``model`` and their sha256."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def deserialise(data: bytes, expected_sha256: str, version: int) -> Any:
    """Load a model from bytes after checking their sha256; a mismatch is never loaded."""
    import joblib

    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.strip():
        raise ModelError(
            f"model version {version} artifact is corrupt or was tampered with: sha256 {actual} "
            f"does not match the registered {expected_sha256.strip()}; refusing to load it"
        )
    return joblib.load(io.BytesIO(data))


def code_version() -> str:
    """The git commit of the code, when known, else the package version."""
    from segmentation import __version__

    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else __version__


def register(
    cur: Any,
    *,
    model: Any,
    model_name: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
    data_fingerprint: dict[str, Any],
    profiles: dict[str, Any],
    trigger: str,
    run_id: str,
    key: bytes | None = None,
) -> int:
    """Insert a candidate version with its signed artifact; returns the new version number.

    ``key`` is the signing key (default: :func:`segmentation.signing.signing_key`).
    """
    key = key or signing.signing_key()
    data, sha = serialise(model)
    cur.execute(
        """INSERT INTO segmentation.model_versions
               (status, model_name, metrics, params, sha256, artifact, data_fingerprint, profiles,
                trigger, code_version, run_id)
           VALUES ('candidate', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING version""",
        (
            model_name,
            json.dumps(metrics),
            json.dumps(params),
            sha,
            data,
            json.dumps(data_fingerprint),
            json.dumps(profiles),
            trigger,
            code_version(),
            run_id,
        ),
    )
    version = int(cur.fetchone()[0])
    # The signature binds the artifact to its version number, known only after the insert.
    cur.execute(
        "UPDATE segmentation.model_versions SET artifact_hmac = %s WHERE version = %s",
        (signing.sign(key, version, ARTIFACT, data), version),
    )
    log.info("registered model version %d (%s, sha256 %s, %d bytes)", version, model_name, sha[:12], len(data))
    return version


def export_artifact(version: int, model: Any, metadata: dict[str, Any], models_dir: Path) -> Path:
    """Write a copy of the artifact and its metadata to ``models_dir`` for people; workers use the database."""
    import joblib

    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"segmentation-v{version}.joblib"
    joblib.dump(model, path, compress=3)
    (models_dir / f"segmentation-v{version}.json").write_text(json.dumps(metadata, indent=2, default=str))
    return path


def champion(cur: Any) -> ModelVersion | None:
    """The current champion, or None when no model has been promoted yet."""
    cur.execute(
        """SELECT version, status, model_name, sha256, metrics, created_at
           FROM segmentation.model_versions WHERE status = 'champion'"""
    )
    row = cur.fetchone()
    return ModelVersion(*row) if row else None


def get_version(cur: Any, version: int) -> ModelVersion:
    """One registry row; ModelError when the version does not exist."""
    cur.execute(
        """SELECT version, status, model_name, sha256, metrics, created_at
           FROM segmentation.model_versions WHERE version = %s""",
        (version,),
    )
    row = cur.fetchone()
    if row is None:
        raise ModelError(f"model version {version} does not exist; see `segmentation model list`")
    return ModelVersion(*row)


def list_versions(cur: Any) -> list[dict[str, Any]]:
    """The registry history, newest first, without artifacts."""
    cur.execute(
        """SELECT version, status, model_name, created_at, promoted_at, trigger,
                  metrics->>'accuracy', metrics->>'macro_f1', metrics->>'log_loss',
                  data_fingerprint->>'rows', notes
           FROM segmentation.model_versions ORDER BY version DESC"""
    )
    keys = [
        "version", "status", "model", "created_at", "promoted_at", "trigger",
        "accuracy", "macro_f1", "log_loss", "rows", "notes",
    ]  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]


def _artifact(cur: Any, version: int) -> bytes:
    cur.execute("SELECT artifact FROM segmentation.model_versions WHERE version = %s", (version,))
    return bytes(cur.fetchone()[0])


def _signature(cur: Any, version: int) -> str | None:
    cur.execute("SELECT artifact_hmac FROM segmentation.model_versions WHERE version = %s", (version,))
    row = cur.fetchone()
    return row[0] if row else None


def load_model(cur: Any, version: int, cache_dir: Path | None = None, *, key: bytes | None = None) -> Any:
    """Load a version's fitted pipeline from the database, verifying its signature and sha256 first.

    The signature (:mod:`segmentation.signing`) is checked before anything is unpickled; ``key`` defaults to
    :func:`segmentation.signing.signing_key`. With ``cache_dir``, a verified local copy keyed by sha256 saves
    the download on later tasks of the same worker; it is verified the same way.
    """
    key = key or signing.signing_key()
    meta = get_version(cur, version)
    signature = _signature(cur, version)
    if cache_dir is None:
        data = _artifact(cur, version)
        signing.verify(key, version, ARTIFACT, data, signature)
        return deserialise(data, meta.sha256, version)
    cached = cache_dir / f"{meta.sha256.strip()}.joblib"
    if cached.exists():
        try:
            data = cached.read_bytes()
            signing.verify(key, version, ARTIFACT, data, signature)
            return deserialise(data, meta.sha256, version)
        except ModelError:
            log.warning("cached artifact %s is corrupt or unsigned; loading from the database", cached)
            cached.unlink(missing_ok=True)
    data = _artifact(cur, version)
    signing.verify(key, version, ARTIFACT, data, signature)
    model = deserialise(data, meta.sha256, version)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")  # workers sharing a cache never clash
        tmp.write_bytes(data)
        tmp.replace(cached)
    except OSError as exc:
        log.warning("cannot cache model artifact locally: %s", exc)
    return model


def sign_version(cur: Any, version: int, *, key: bytes | None = None) -> str:
    """Re-sign a version's stored artifact (an operator's decision that it is trusted); returns the signature.

    For versions registered before signatures existed, or after the key was rotated. The sha256 must still
    match, so a corrupt artifact is never signed.
    """
    key = key or signing.signing_key()
    meta = get_version(cur, version)
    data = _artifact(cur, version)
    actual = hashlib.sha256(data).hexdigest()
    if actual != meta.sha256.strip():
        raise ModelError(
            f"model version {version} artifact has sha256 {actual}, not the registered {meta.sha256.strip()}; "
            "refusing to sign it"
        )
    signature = signing.sign(key, version, ARTIFACT, data)
    cur.execute("UPDATE segmentation.model_versions SET artifact_hmac = %s WHERE version = %s", (signature, version))
    log.info("model version %d re-signed", version)
    return signature


def promote(cur: Any, version: int, *, reason: str, forced: bool = False) -> None:
    """Make ``version`` the champion and retire the previous one, atomically in the caller's transaction."""
    locks.xact_lock(cur, locks.PROMOTION)
    target = get_version(cur, version)
    if target.status == "champion":
        log.info("model version %d is already the champion", version)
        return
    note = ("forced: " if forced else "") + reason
    cur.execute(
        """UPDATE segmentation.model_versions SET status = 'retired',
                  notes = concat_ws('; ', notes, %s)
           WHERE status = 'champion'""",
        (f"retired by version {version}",),
    )
    cur.execute(
        """UPDATE segmentation.model_versions SET status = 'champion', promoted_at = now(),
                  notes = concat_ws('; ', notes, %s)
           WHERE version = %s""",
        (note, version),
    )
    log.info("model version %d promoted to champion (%s)", version, note)


def reject(cur: Any, version: int, reason: str) -> None:
    """Mark a candidate as rejected by the promotion gate, with the reason."""
    cur.execute(
        """UPDATE segmentation.model_versions SET status = 'rejected', notes = concat_ws('; ', notes, %s)
           WHERE version = %s AND status = 'candidate'""",
        (reason, version),
    )
