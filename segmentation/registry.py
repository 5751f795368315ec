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
from segmentation.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# The artifact kinds named in their signatures: the served model and the evaluation model.
ARTIFACT = "artifact"
EVAL_ARTIFACT = "eval_artifact"
# Per kind: the columns holding its bytes, sha256 and signature.
_COLUMNS: dict[str, tuple[str, str, str]] = {
    ARTIFACT: ("artifact", "sha256", "artifact_hmac"),
    EVAL_ARTIFACT: ("eval_artifact", "eval_sha256", "eval_artifact_hmac"),
}


@dataclass(frozen=True)
class ModelVersion:
    """A registry row without its artifact bytes."""

    version: int
    status: str
    model_name: str
    sha256: str
    metrics: dict[str, Any]
    created_at: Any


def _required(key: bytes | None) -> bytes:
    """The signing key the caller resolved (``segmentation.signing.signing_key`` of its settings)."""
    if not key:
        raise ConfigError("no model signing key was given; resolve it with segmentation.signing.signing_key")
    return key


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
    eval_model: Any | None = None,
    explain_background: list[dict[str, Any]] | None = None,
    key: bytes | None = None,
) -> int:
    """Insert a candidate version with its signed artifacts; returns the new version number.

    ``model`` is the model that scores; ``eval_model`` (stored as ``eval_artifact``) the one the promotion gate
    evaluates, fitted without the stable holdout. ``explain_background``: rows of attributes that
    segmentation.explain measures effects against. ``key`` is the signing key, which the caller
    resolved (:func:`segmentation.signing.signing_key`).
    """
    key = _required(key)
    data, sha = serialise(model)
    eval_data, eval_sha = serialise(eval_model) if eval_model is not None else (None, None)
    cur.execute(
        """INSERT INTO segmentation.model_versions
               (status, model_name, metrics, params, sha256, artifact, data_fingerprint, profiles,
                trigger, code_version, run_id, eval_artifact, eval_sha256, explain_background)
           VALUES ('candidate', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
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
            eval_data,
            eval_sha,
            json.dumps(explain_background) if explain_background is not None else None,
        ),
    )
    version = int(cur.fetchone()[0])
    # The signatures bind the artifacts to their version number, known only after the insert.
    cur.execute(
        """UPDATE segmentation.model_versions SET artifact_hmac = %s, eval_artifact_hmac = %s
           WHERE version = %s""",
        (
            signing.sign(key, version, ARTIFACT, data),
            signing.sign(key, version, EVAL_ARTIFACT, eval_data) if eval_data is not None else None,
            version,
        ),
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


def _stored(cur: Any, version: int, kind: str) -> tuple[bytes | None, str | None, str | None]:
    """A version's artifact bytes of ``kind``, their registered sha256 and their signature."""
    data_col, sha_col, hmac_col = _COLUMNS[kind]
    cur.execute(
        f"SELECT {data_col}, {sha_col}, {hmac_col} FROM segmentation.model_versions WHERE version = %s",
        (version,),
    )
    row = cur.fetchone()
    if row is None:
        raise ModelError(f"model version {version} does not exist; see `segmentation model list`")
    data, sha, signature = row
    return (bytes(data) if data is not None else None), sha, signature


def load_model(
    cur: Any,
    version: int,
    cache_dir: Path | None = None,
    *,
    evaluation: bool = False,
    key: bytes | None = None,
) -> Any:
    """Load a version's fitted pipeline from the database, verifying its signature and sha256 first.

    The signature (:mod:`segmentation.signing`) is checked before anything is unpickled; ``key`` is the signing key the
    caller resolved. ``evaluation`` loads the evaluation model (fitted without the
    stable holdout) instead of the served one; a version registered without one (before the served model was
    refitted on every row) has only the served model, which was itself fitted without the holdout, so that
    one is returned. With ``cache_dir``, a verified local copy keyed by sha256 saves the download on later
    tasks of the same worker; it is verified the same way.
    """
    key = _required(key)
    kind = ARTIFACT
    if evaluation:
        _, eval_sha, _ = _stored(cur, version, EVAL_ARTIFACT)
        kind = EVAL_ARTIFACT if eval_sha else ARTIFACT
    data, sha, signature = _stored(cur, version, kind)
    if data is None or sha is None:
        raise ModelError(f"model version {version} has no {kind}")
    sha = sha.strip()
    cached = cache_dir / f"{sha}.joblib" if cache_dir is not None else None
    if cached is not None and cached.exists():
        try:
            local = cached.read_bytes()
            signing.verify(key, version, kind, local, signature)
            return deserialise(local, sha, version)
        except ModelError:
            log.warning("cached artifact %s is corrupt or unsigned; loading from the database", cached)
            cached.unlink(missing_ok=True)
    signing.verify(key, version, kind, data, signature)
    model = deserialise(data, sha, version)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")  # workers sharing a cache never clash
            tmp.write_bytes(data)
            tmp.replace(cached)
        except OSError as exc:
            log.warning("cannot cache model artifact locally: %s", exc)
    return model


def explain_background(cur: Any, version: int) -> list[dict[str, Any]] | None:
    """The attribute rows stored with a version for explanations, or None when it has none."""
    cur.execute("SELECT explain_background FROM segmentation.model_versions WHERE version = %s", (version,))
    row = cur.fetchone()
    return row[0] if row else None


def sign_version(cur: Any, version: int, *, key: bytes | None = None) -> str:
    """Re-sign a version's stored artifacts (an operator's decision that they are trusted); returns the signature.

    For versions registered before signatures existed, or after the key was rotated. Each sha256 must still
    match, so a corrupt artifact is never signed.
    """
    key = _required(key)
    signatures: dict[str, str | None] = {}
    for kind in (ARTIFACT, EVAL_ARTIFACT):
        data, sha, _ = _stored(cur, version, kind)
        if data is None or sha is None:
            signatures[kind] = None
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha.strip():
            raise ModelError(
                f"model version {version} {kind} has sha256 {actual}, not the registered {sha.strip()}; "
                "refusing to sign it"
            )
        signatures[kind] = signing.sign(key, version, kind, data)
    cur.execute(
        """UPDATE segmentation.model_versions SET artifact_hmac = %s, eval_artifact_hmac = %s
           WHERE version = %s""",
        (signatures[ARTIFACT], signatures[EVAL_ARTIFACT], version),
    )
    log.info("model version %d re-signed", version)
    return str(signatures[ARTIFACT])


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
