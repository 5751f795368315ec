"""Model artifact signatures: an HMAC-SHA256 keyed by a secret kept outside the customer database.

A credential that can rewrite ``model_versions`` can replace an artifact and its sha256 together, but it
cannot produce the signature without the key, so workers refuse the artifact before unpickling it.

The key is ``settings.model_signing_key``: ``SEGMENTATION_MODEL_SIGNING_KEY``, or inside Airflow the Airflow
Variable ``segmentation_model_signing_key`` (read by segmentation.airflow_tasks, so any Airflow secrets backend
can hold it). Without one, the embedded demo database gets a key generated once under the data directory
(``.data/model-signing.key``, mode 0600); anything else is a ConfigError naming the variable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from segmentation.config import ENV_PREFIX, Settings
from segmentation.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

KEY_ENV = ENV_PREFIX + "MODEL_SIGNING_KEY"
KEY_VARIABLE = "segmentation_model_signing_key"
LOCAL_KEY_FILE = "model-signing.key"
MIN_KEY_LENGTH = 16


def _checked(key: str, source: str) -> bytes:
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"the model signing key from {source} has {len(key)} characters; use at least {MIN_KEY_LENGTH} "
            f"(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return key.encode()


def _local_key(data_dir: Path) -> bytes:
    """The demo key under ``data_dir``, created once with owner-only permissions."""
    path = data_dir / LOCAL_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.info("generated a local model signing key for the embedded database: %s", path)
    return _checked(path.read_text(), str(path))


def signing_key(settings: Settings) -> bytes:
    """The signing key (see the module docstring); ConfigError naming the variable when there is none."""
    if settings.model_signing_key:
        return _checked(settings.model_signing_key, KEY_ENV)
    from segmentation.db import uses_embedded_server

    if uses_embedded_server(settings):
        return _local_key(settings.data_dir)
    raise ConfigError(
        f"{KEY_ENV} is not set: model artifacts cannot be signed or verified. Set it (at least "
        f"{MIN_KEY_LENGTH} characters, the same on every worker), or the Airflow Variable {KEY_VARIABLE}; "
        "only the embedded demo database generates a local key"
    )


def message(version: int, kind: str, sha256: str) -> bytes:
    """What is signed: the version, the artifact's kind and the sha256 of its bytes."""
    return f"{int(version)}:{kind}:{sha256.strip()}".encode()


def sign(key: bytes, version: int, kind: str, data: bytes) -> str:
    """The hex HMAC-SHA256 of an artifact's bytes, bound to its version and kind."""
    return hmac.new(key, message(version, kind, hashlib.sha256(data).hexdigest()), hashlib.sha256).hexdigest()


def verify(key: bytes, version: int, kind: str, data: bytes, signature: str | None) -> None:
    """ModelError unless ``signature`` is the artifact's HMAC (compared in constant time); nothing is loaded."""
    if not signature:
        raise ModelError(
            f"model version {version} {kind} has no signature; refusing to load it. If it is trusted, re-sign it "
            f"with `segmentation model sign {version}`"
        )
    expected = sign(key, version, kind, data)
    if not hmac.compare_digest(expected, signature.strip()):
        raise ModelError(
            f"model version {version} {kind} fails its signature check: it was changed outside training, or "
            f"signed with another {KEY_ENV}; refusing to load it"
        )
