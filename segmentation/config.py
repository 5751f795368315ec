"""All settings in one place, read from the environment at run time (never at import time)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from segmentation.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQL_DIR = PROJECT_ROOT / "sql"
ENV_PREFIX = "SEGMENTATION_"
# Set on every connection: a statement may run an hour, a lock wait two minutes.
DEFAULT_STATEMENT_TIMEOUT_MS = 3_600_000
DEFAULT_LOCK_TIMEOUT_MS = 120_000


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


N = TypeVar("N", int, float)


def _number(name: str, default: N, low: N, high: N) -> N:
    """A numeric setting of the default's type, checked against its inclusive range."""
    kind = type(default)
    raw = _env(name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} is not a {kind.__name__}; expected {low}..{high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{ENV_PREFIX}{name}={value} is out of range; expected {low}..{high}")
    return value


TUNE_SCORINGS: tuple[str, ...] = ("neg_log_loss", "f1_macro", "accuracy")
# Whether a challenger that passed the gate waits for a person's approval in segmentation_retrain.
APPROVAL_CHOICES: tuple[str, ...] = ("off", "required")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    """A text setting that must be one of ``allowed``."""
    value = _env(name, default).strip()
    if value not in allowed:
        raise ConfigError(f"{ENV_PREFIX}{name}={value!r} is not allowed; expected one of {list(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Run-time settings; build with :func:`get_settings`."""

    database_url: str | None
    airflow_conn_id: str
    data_dir: Path
    models_dir: Path
    sql_dir: Path
    reject_threshold: float
    shard_size: int
    chunk_size: int
    max_shards: int
    retrain_interval_days: int
    cv_folds: int
    train_row_cap: int
    holdout_share: float
    random_state: int
    promotion_margin: float
    statement_timeout_ms: int
    lock_timeout_ms: int
    drift_threshold: float
    # Native threads (OpenMP/BLAS) per task. Tasks run side by side, and oversubscribed OpenMP threads
    # slow HistGradientBoosting down several-fold, so one per task unless told otherwise.
    threads: int = 1
    candidates: tuple[str, ...] = field(default_factory=tuple)
    # Model tuning (segmentation.training): successive-halving random search over PARAM_GRIDS of the best
    # candidate: ``tune_candidates`` settings sampled, each round keeps 1/``tune_factor`` of them on
    # ``tune_factor`` times more rows, starting from ``tune_min_resources`` rows; ranked by ``tune_scoring``.
    tune_candidates: int = 12
    tune_factor: int = 3
    tune_min_resources: int = 500
    tune_scoring: str = "neg_log_loss"
    # Candidate families are compared with CV on at most this many (stratified) training rows.
    compare_row_cap: int = 20_000
    # Recorded with each scored shard; the host name unless several workers share a host.
    worker_name: str = ""
    # Airflow tasks: retries and the execution timeout of every task; training gets its own, longer timeout
    # and at most one retry (a failed fit rarely succeeds on the same data).
    task_retries: int = 3
    task_timeout_minutes: int = 120
    train_timeout_minutes: int = 360
    # Alerts (segmentation.alerts): a segment share that moved more than this many percentage points since
    # the last run; the Airflow SMTP connection that delivers them and the recipients.
    share_alert_points: float = 5.0
    alerts_conn_id: str = "segmentation_alerts"
    alerts_to: tuple[str, ...] = field(default_factory=tuple)
    alerts_from: str = "segmentation@localhost"
    # The login that registers and promotes model versions; None means the customer database URL's login.
    training_database_url: str | None = None
    # Signs and verifies model artifacts (segmentation.signing); never printed.
    model_signing_key: str | None = field(default=None, repr=False)
    # Whether the alerts' Airflow connection can be looked up in this process (inside Airflow, or set as
    # AIRFLOW_CONN_<ID> in the environment): the CLI does not import Airflow only to find there is none.
    alerts_connection_here: bool = False
    # The promotion gate's paired test (segmentation.gate): a challenger is promoted only when its macro-F1
    # gain has a p-value below ``gate_level``, from ``gate_resamples`` paired-bootstrap resamples.
    gate_level: float = 0.05
    gate_resamples: int = 2000
    # Realised quality (segmentation.realised): alert when the champion's accuracy on late labels falls more
    # than ``realised_margin`` (a fraction) below its holdout accuracy, once it has ``realised_min_labels``.
    realised_margin: float = 0.05
    realised_min_labels: int = 200
    # Approval before promotion (README "Approval before promotion"): "required" holds a challenger that passed
    # the gate for a person's decision in segmentation_retrain, rejected when nobody answers within
    # ``approval_timeout_hours`` (0.001 h = 3.6 s at least, for tests; 720 h = 30 days at most).
    promotion_approval: str = "off"
    approval_timeout_hours: float = 72.0
    # The folder of the CRM export's change-feed files (segmentation.feed); None: <data_dir>/exports.
    export_dir: Path | None = None
    # The nightly DAG's Deadline Alert: segments published within this many hours of the run's queued time;
    # 0 turns it off (Airflow 3.3's dag.test() cannot run a DAG with a deadline: apache/airflow#73428).
    freshness_deadline_hours: float = 4.0

    @property
    def model_cache_dir(self) -> Path:
        """Verified model artifacts cached by sha256 on this worker."""
        return self.data_dir / "model-cache"


def get_settings() -> Settings:
    """Read every setting from ``SEGMENTATION_*`` environment variables, with safe defaults."""
    data_dir = Path(_env("DATA_DIR", str(PROJECT_ROOT / ".data"))).expanduser().resolve()
    candidates = tuple(c.strip() for c in _env("CANDIDATES", "").split(",") if c.strip())
    alerts_conn_id = _env("ALERTS_CONN_ID", "segmentation_alerts").strip()
    return Settings(
        database_url=os.environ.get(ENV_PREFIX + "DATABASE_URL") or None,
        airflow_conn_id=_env("AIRFLOW_CONN_ID", "segmentation_db"),
        data_dir=data_dir,
        models_dir=Path(_env("MODELS_DIR", str(PROJECT_ROOT / "models"))).expanduser().resolve(),
        sql_dir=Path(_env("SQL_DIR", str(DEFAULT_SQL_DIR))).expanduser().resolve(),
        reject_threshold=_number("REJECT_THRESHOLD", 0.20, 0.0, 1.0),
        shard_size=_number("SHARD_SIZE", 200_000, 1, 100_000_000),
        chunk_size=_number("CHUNK_SIZE", 20_000, 1, 10_000_000),
        max_shards=_number("MAX_SHARDS", 1024, 1, 1024),
        retrain_interval_days=_number("RETRAIN_INTERVAL_DAYS", 7, 0, 3650),
        cv_folds=_number("CV_FOLDS", 5, 2, 20),
        train_row_cap=_number("TRAIN_ROW_CAP", 50_000, 100, 100_000_000),
        holdout_share=_number("HOLDOUT_SHARE", 0.2, 0.05, 0.5),
        random_state=_number("RANDOM_STATE", 42, 0, 2**31 - 1),
        threads=_number("THREADS", 1, 1, 256),
        promotion_margin=_number("PROMOTION_MARGIN", 0.0, -1.0, 1.0),
        statement_timeout_ms=_number("STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS, 0, 86_400_000),
        lock_timeout_ms=_number("LOCK_TIMEOUT_MS", DEFAULT_LOCK_TIMEOUT_MS, 0, 86_400_000),
        drift_threshold=_number("DRIFT_THRESHOLD", 0.25, 0.0, 100.0),
        candidates=candidates,
        tune_candidates=_number("TUNE_CANDIDATES", 12, 1, 1000),
        tune_factor=_number("TUNE_FACTOR", 3, 2, 10),
        tune_min_resources=_number("TUNE_MIN_RESOURCES", 500, 50, 100_000_000),
        tune_scoring=_choice("TUNE_SCORING", "neg_log_loss", TUNE_SCORINGS),
        compare_row_cap=_number("COMPARE_ROW_CAP", 20_000, 100, 100_000_000),
        worker_name=_env("WORKER_NAME", "").strip() or socket.gethostname(),
        task_retries=_number("TASK_RETRIES", 3, 1, 10),
        task_timeout_minutes=_number("TASK_TIMEOUT_MINUTES", 120, 1, 7 * 24 * 60),
        train_timeout_minutes=_number("TRAIN_TIMEOUT_MINUTES", 360, 1, 7 * 24 * 60),
        share_alert_points=_number("SHARE_ALERT", 5.0, 0.0, 100.0),
        alerts_conn_id=alerts_conn_id,
        alerts_to=tuple(a.strip() for a in _env("ALERTS_TO", "").split(",") if a.strip()),
        alerts_from=_env("ALERTS_FROM", "segmentation@localhost").strip(),
        training_database_url=os.environ.get(ENV_PREFIX + "TRAINING_DATABASE_URL") or None,
        model_signing_key=os.environ.get(ENV_PREFIX + "MODEL_SIGNING_KEY") or None,
        gate_level=_number("GATE_LEVEL", 0.05, 0.0001, 0.5),
        gate_resamples=_number("GATE_RESAMPLES", 2000, 100, 1_000_000),
        alerts_connection_here=bool(os.environ.get(f"AIRFLOW_CONN_{alerts_conn_id.upper()}")),
        realised_margin=_number("REALISED_MARGIN", 0.05, 0.0, 1.0),
        realised_min_labels=_number("REALISED_MIN_LABELS", 200, 1, 1_000_000_000),
        promotion_approval=_choice("PROMOTION_APPROVAL", "off", APPROVAL_CHOICES),
        approval_timeout_hours=_number("APPROVAL_TIMEOUT_HOURS", 72.0, 0.001, 720.0),
        export_dir=Path(_env("EXPORT_DIR", str(data_dir / "exports"))).expanduser().resolve(),
        freshness_deadline_hours=_number("FRESHNESS_DEADLINE_HOURS", 4.0, 0.0, 168.0),
    )


# Inside Airflow: the connection of the login that registers and promotes model versions (optional; without it
# training uses the customer database connection).
TRAINING_CONN_ID = "segmentation_db_training"
# The human-in-the-loop task of segmentation_retrain that holds a challenger for approval (when required).
REVIEW_TASK_ID = "review"
# The DAG that promotes or rolls back to a model version; the UI triggers it through Airflow's REST API.
PROMOTE_DAG_ID = "segmentation_promote"
# The Airflow Asset updated whenever a new champion model is promoted; it triggers a rescore.
CHAMPION_ASSET_NAME = "segmentation_champion_model"
# The Airflow Asset updated by every finished nightly run, with the run's counts in the event's extra.
SEGMENTS_ASSET_NAME = "segmentation.customer_segments"
# The lineage chain in Airflow's Assets view: customers (read by clean) -> features -> segments -> the CRM export.
CUSTOMERS_ASSET_NAME = "segmentation.customers"
FEATURES_ASSET_NAME = "segmentation.customer_features"
# Updated by every CRM export of the segment change feed (segmentation_crm_export).
CRM_EXPORT_ASSET_NAME = "segmentation.crm_export"
# The Airflow pool that caps concurrent database-heavy tasks (scoring shards); created by the set-up scripts.
DB_POOL_NAME = "segmentation_db"
DB_POOL_SLOTS_DEFAULT = 4
