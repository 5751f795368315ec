"""The pipeline's steps, one function per Airflow task: each reads tables, writes tables, returns small figures.

Airflow tasks and the CLI call the same functions, so every step runs the same with or without Airflow. This
layer reads the settings and hands them to the core modules as arguments.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from threadpoolctl import threadpool_limits

from segmentation import alerts, gate, locks, planning, rebuild, registry, scoring, signing
from segmentation.cleaning import check_reject_share, reason_counts, validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, DERIVED_COLUMNS, SEGMENT, SEGMENTS
from segmentation.config import Settings, get_settings
from segmentation.db import connect, resolve_database_url, training_database_url
from segmentation.errors import DataError, ModelError, NotFoundError, RejectThresholdExceeded
from segmentation.features import derived_columns_sql
from segmentation.loading import write_rejects
from segmentation.monitoring import (
    current_drift,
    record_drift,
    record_run_metrics,
    reference_distributions,
    refresh_segment_distributions,
    share_moves,
)
from segmentation.pgcopy import copy_binary_in, copy_frame_out

if TYPE_CHECKING:
    from segmentation.training import TrainingOptions, TrainingResult

log = logging.getLogger(__name__)

# Wraps the planned shards of a run, e.g. in a progress bar: list of shards in, iterable of the same out.
Progress = Callable[[list[dict[str, int]]], Iterable[dict[str, int]]]

CLEAN_TYPED_COLUMNS = [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]
FEATURE_TABLE_COLUMNS = [*CLEAN_TYPED_COLUMNS, *DERIVED_COLUMNS]
NUMERIC_TEXT_COLUMNS = ["age", "work_experience", "family_size", *DERIVED_COLUMNS]
# Fewest labelled customers per segment that training accepts.
MIN_LABELS_PER_SEGMENT = 20


def new_run_id(prefix: str = "cli") -> str:
    """A run id for work started outside Airflow."""
    return f"{prefix}__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def _record_step(cur: Any, run_id: str, step: str, figures: dict[str, Any]) -> None:
    cur.execute(
        """INSERT INTO segmentation.pipeline_runs (run_id, steps) VALUES (%s, jsonb_build_object(%s, %s::jsonb))
           ON CONFLICT (run_id) DO UPDATE
           SET steps = pipeline_runs.steps || jsonb_build_object(%s, %s::jsonb)""",
        (run_id, step, json.dumps(figures), step, json.dumps(figures)),
    )


def _where(url: str | None, settings: Settings | None) -> tuple[str, Settings]:
    """The customer database URL and the settings of a step: as given, else read here (the CLI's path)."""
    settings = settings or get_settings()
    url = url or resolve_database_url(settings)
    # Steps called with a URL hand it on: training and the signing key's demo check follow the same database.
    return url, settings if settings.database_url == url else replace(settings, database_url=url)


@contextmanager
def _step(run_id: str, step: str, url: str | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """One transaction for a step; its figures and duration are recorded in ``pipeline_runs`` on commit."""
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    with connect(url) as conn, conn.cursor() as cur:
        yield cur, figures
        figures["seconds"] = round(time.perf_counter() - started, 3)
        figures["finished_at"] = datetime.now(UTC).isoformat()
        _record_step(cur, run_id, step, figures)
    log.info("run %s step %s: %s", run_id, step, figures)


def start_run(run_id: str, dag_id: str = "cli", url: str | None = None, settings: Settings | None = None) -> str:
    """Open (or reopen, on a re-run) the audit row of a run.

    Fails first, with a ConfigError naming the variable, when there is no model signing key.
    """
    url, settings = _where(url, settings)
    signing.signing_key(settings)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.pipeline_runs (run_id, dag_id) VALUES (%s, %s)
               ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL""",
            (run_id, dag_id),
        )
    return run_id


# Change capture: each step takes the ids a trigger queued for it, inside its own transaction (a killed step
# leaves its queue intact; a row changed while the step runs is queued again for the next run). The taken ids
# go to a temp table that joins the source by primary key, so the cost follows the change, not the table.
_TAKE_SQL = """
CREATE TEMP TABLE {temp} (customer_id bigint PRIMARY KEY) ON COMMIT DROP;
WITH taken AS (DELETE FROM segmentation.{queue} RETURNING customer_id)
INSERT INTO {temp} SELECT customer_id FROM taken;
ANALYZE {temp};
"""
_CLEAN_CANDIDATES_SQL = f"""
SELECT c.customer_id, {", ".join(f"c.{col}" for col in ATTRIBUTE_COLUMNS)}, c.updated_at
FROM clean_taken AS t
JOIN segmentation.customers AS c USING (customer_id)
LEFT JOIN segmentation.clean_customers AS k USING (customer_id)
WHERE (k.customer_id IS NULL OR k.source_updated_at < c.updated_at)
  AND NOT EXISTS (SELECT 1 FROM segmentation.customer_rejects AS r
                  WHERE r.customer_id = c.customer_id AND r.source_updated_at = c.updated_at)
"""


# A step that rewrote more than this share of its table refreshes the table's statistics (sql/012).
BULK_WRITE_SHARE = 0.1


def analyze_if_bulk(cur: Any, table: str, rows: int) -> bool:
    """ANALYZE ``segmentation.table`` when ``rows`` written exceed BULK_WRITE_SHARE of it or it has no statistics.

    The scoring shards page through id ranges with ORDER BY ... LIMIT, whose plan is only right with statistics.
    """
    if rows <= 0:
        return False
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"segmentation.{table}",))
    estimate = float(cur.fetchone()[0])
    if 0 <= estimate and rows <= BULK_WRITE_SHARE * estimate:
        return False
    cur.execute("SELECT segmentation.analyze_after_bulk_write(%s)", (table,))
    log.info("%s: %d rows written (estimate before: %.0f); statistics refreshed", table, rows, estimate)
    return True


def take_queue(cur: Any, queue: str, temp: str) -> int:
    """Move the ids of change queue ``queue`` into temp table ``temp`` (dropped at commit); how many."""
    if queue not in ("clean_pending", "features_pending") or temp not in ("clean_taken", "features_taken"):
        raise ValueError(f"unknown change queue {queue!r} or temp table {temp!r}")
    cur.execute(_TAKE_SQL.format(queue=queue, temp=temp))
    cur.execute(f"SELECT count(*) FROM {temp}")
    return int(cur.fetchone()[0])


def check_source_columns(cur: Any) -> None:
    """Fail with the column names when upstream renamed or dropped columns of ``customers``."""
    cur.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'segmentation' AND table_name = 'customers'"""
    )
    present = {row[0] for row in cur.fetchall()}
    missing = [c for c in (CUSTOMER_ID, *ATTRIBUTE_COLUMNS, "updated_at") if c not in present]
    if missing:
        extra = sorted(present - {CUSTOMER_ID, *ATTRIBUTE_COLUMNS, "updated_at"})
        raise DataError(
            f"segmentation.customers lacks columns {missing} (unexpected columns: {extra}); "
            f"expected {[CUSTOMER_ID, *ATTRIBUTE_COLUMNS, 'updated_at']}. Nothing was cleaned or scored."
        )


def clean(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Validate new and changed customers: clean rows to ``clean_customers``, bad rows to quarantine.

    Raises RejectThresholdExceeded, writing nothing, when too large a share of the batch is bad.
    """
    url, settings = _where(url, settings)
    with _step(run_id, "clean", url) as (cur, figures):
        # One cleaner at a time: a second, overlapping run waits here and then finds nothing new.
        locks.xact_lock(cur, locks.CLEAN)
        check_source_columns(cur)
        taken = take_queue(cur, "clean_pending", "clean_taken")
        raw = copy_frame_out(cur, _CLEAN_CANDIDATES_SQL)
        result = validate(raw)
        try:
            check_reject_share(len(raw), result.rejects, settings.reject_threshold)
        except RejectThresholdExceeded as exc:
            alerts.raise_alert("batch_refused", str(exc), run_id=run_id, task_id="clean", url=url, settings=settings)
            raise
        clean_rows = result.clean.rename(columns={"updated_at": "source_updated_at"})
        cur.execute(
            "CREATE TEMP TABLE clean_stage (LIKE segmentation.clean_customers INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        copy_binary_in(cur, clean_rows, "clean_stage", [*CLEAN_TYPED_COLUMNS, "source_updated_at"])
        cols = ", ".join([*CLEAN_TYPED_COLUMNS, "source_updated_at"])
        cur.execute(
            f"""INSERT INTO segmentation.clean_customers ({cols}, cleaned_at, run_id)
                SELECT {cols}, now(), %s FROM clean_stage
                ON CONFLICT (customer_id) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in [*ATTRIBUTE_COLUMNS, "source_updated_at"])},
                cleaned_at = EXCLUDED.cleaned_at, run_id = EXCLUDED.run_id""",
            (run_id,),
        )
        rejects = result.rejects.rename(columns={"updated_at": "source_updated_at"})
        if not rejects.empty:
            # A customer whose latest row is invalid is no longer clean: drop its stale clean row.
            ids = [int(i) for i in rejects[CUSTOMER_ID]]
            cur.execute("DELETE FROM segmentation.customer_features WHERE customer_id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM segmentation.clean_customers WHERE customer_id = ANY(%s)", (ids,))
        quarantined = write_rejects(cur, rejects, run_id)
        figures.update(
            rows=len(raw),
            queued=taken,
            clean=len(result.clean),
            rejected=quarantined,
            reasons=reason_counts(rejects),
            analyzed=analyze_if_bulk(cur, "clean_customers", len(clean_rows)),
        )
    return figures


# In id order, so that a bulk build lays the rows out as the shards read them (id ranges by primary key).
def _features_upsert_sql() -> str:
    derived = derived_columns_sql("k")
    columns = [*FEATURE_TABLE_COLUMNS, "source_updated_at"]
    return f"""
INSERT INTO segmentation.customer_features ({", ".join(columns)}, updated_at, run_id)
SELECT {", ".join(f"k.{c}" for c in CLEAN_TYPED_COLUMNS)}, {", ".join(derived[c] for c in DERIVED_COLUMNS)},
       k.source_updated_at, now(), %s
FROM features_taken AS t
JOIN segmentation.clean_customers AS k USING (customer_id)
LEFT JOIN segmentation.customer_features AS f USING (customer_id)
WHERE f.customer_id IS NULL OR f.source_updated_at IS DISTINCT FROM k.source_updated_at
ORDER BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])}, updated_at = EXCLUDED.updated_at, run_id = EXCLUDED.run_id
"""


def typed_clean_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Types for clean rows read back as text."""
    out = frame.copy()
    out[CUSTOMER_ID] = out[CUSTOMER_ID].astype("int64")
    for column in (c for c in NUMERIC_TEXT_COLUMNS if c in out.columns):
        out[column] = pd.to_numeric(out[column]).astype("float64")
    return out


def build_features(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Write the deterministic feature columns of the clean customers queued as new or changed.

    One set-based statement in the database: no rows travel to Python and back.
    """
    url, settings = _where(url, settings)
    with _step(run_id, "features", url) as (cur, figures):
        taken = take_queue(cur, "features_pending", "features_taken")
        cur.execute(_features_upsert_sql(), (run_id,))
        rows = cur.rowcount
        figures.update(rows=rows, queued=taken, analyzed=analyze_if_bulk(cur, "customer_features", rows))
    return figures


def _labelled_features(cur: Any) -> pd.DataFrame:
    frame = copy_frame_out(
        cur,
        f"""SELECT {", ".join(f"f.{c}" for c in FEATURE_TABLE_COLUMNS)}, f.source_updated_at, l.segment
            FROM segmentation.customer_features AS f
            JOIN segmentation.customer_labels AS l USING (customer_id)
            ORDER BY f.customer_id""",
    )
    return typed_clean_frame(frame)


def retrain_due(cur: Any, run_id: str, settings: Settings) -> tuple[str, str] | None:
    """Whether a retrain is due now, as ``(trigger, reason)``: no champion, an old champion, or input drift."""
    current = registry.champion(cur)
    if current is None:
        return "schedule", "no champion yet"
    cur.execute(
        """SELECT now() - created_at > make_interval(days => %s), data_fingerprint->'distributions'
           FROM segmentation.model_versions WHERE version = %s""",
        (settings.retrain_interval_days, current.version),
    )
    too_old, reference = cur.fetchone()
    if too_old:
        return "schedule", f"champion v{current.version} is older than {settings.retrain_interval_days} days"
    drift = current_drift(cur, reference or {})
    record_drift(cur, run_id, drift)
    worst = max(drift.items(), key=lambda kv: kv[1], default=None)
    if worst and worst[1] > settings.drift_threshold:
        return "drift", f"input drift: PSI of {worst[0]} is {worst[1]:.3f}, above {settings.drift_threshold}"
    return None


def training_options(
    settings: Settings,
    *,
    candidates: list[str] | None = None,
    cv_folds: int | None = None,
    row_cap: int | None = None,
) -> TrainingOptions:
    """The training options of ``settings``, with a run's own candidates, folds and row cap when given."""
    from segmentation.selection import TuningOptions
    from segmentation.training import TrainingOptions

    return TrainingOptions(
        candidates=candidates or list(settings.candidates) or None,
        cv_folds=cv_folds or settings.cv_folds,
        holdout_share=settings.holdout_share,
        row_cap=row_cap or settings.train_row_cap,
        random_state=settings.random_state,
        compare_row_cap=settings.compare_row_cap,
        tuning=TuningOptions(
            n_candidates=settings.tune_candidates,
            factor=settings.tune_factor,
            min_resources=settings.tune_min_resources,
            scoring=settings.tune_scoring,
        ),
    )


def train(
    run_id: str,
    *,
    trigger: str,
    candidates: list[str] | None = None,
    cv_folds: int | None = None,
    row_cap: int | None = None,
    url: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Train on labelled customers, register a candidate version and export a copy; returns its figures."""
    # Imported here: scikit-learn's import costs seconds that tasks which do not train should not pay.
    from segmentation.labelled import holdout_mask
    from segmentation.profiles import segment_profiles
    from segmentation.training import train_model

    settings = settings or get_settings()
    url = url or training_database_url(settings)  # the login that may register model versions
    options = training_options(settings, candidates=candidates, cv_folds=cv_folds, row_cap=row_cap)
    with _step(run_id, "train", url) as (cur, figures):
        labelled = _labelled_features(cur)
        counts = labelled[SEGMENT].value_counts() if not labelled.empty else pd.Series(dtype=int)
        short = {s: int(counts.get(s, 0)) for s in SEGMENTS if counts.get(s, 0) < MIN_LABELS_PER_SEGMENT}
        if short:
            raise ModelError(
                f"too few labelled clean customers to train: {short} (need at least {MIN_LABELS_PER_SEGMENT} "
                f"per segment); load labelled customers with `segmentation load-csv` or `generate`"
            )
        is_holdout = holdout_mask(labelled[CUSTOMER_ID], settings.holdout_share)
        with threadpool_limits(settings.threads):
            result = train_model(labelled.loc[~is_holdout], options, holdout=labelled.loc[is_holdout])
        fingerprint = {
            "rows": len(labelled),
            "train_rows": result.n_train,
            "holdout_rows": result.n_holdout,
            "served_rows": result.n_served,
            "label_shares": result.label_shares,
            "max_updated_at": str(labelled["source_updated_at"].max()),
            "distributions": reference_distributions(labelled),
        }
        version = registry.register(
            cur,
            model=result.pipeline,
            eval_model=result.eval_pipeline,
            model_name=result.model_name,
            metrics={**result.metrics, "comparison": result.comparison, "rows": metric_rows(result)},
            params=result.params,
            data_fingerprint=fingerprint,
            profiles=segment_profiles(labelled),
            explain_background=background_sample(labelled.loc[~is_holdout], settings.random_state),
            trigger=trigger,
            run_id=run_id,
            key=signing.signing_key(settings),
        )
        figures.update(version=version, model=result.model_name, rows=len(labelled), **_headline(result.metrics))
    registry.export_artifact(version, result.pipeline, {"version": version, **figures}, settings.models_dir)
    return figures


def metric_rows(result: TrainingResult) -> dict[str, str]:
    """Which rows each figure of ``model_versions.metrics`` comes from (stored as ``metrics["rows"]``)."""
    return {
        "holdout metrics": (
            f"accuracy, macro_f1, log_loss, brier, ece_*, confusion_matrix, per_class_f1: the stable holdout "
            f"({result.n_holdout} customers by id hash), scored by the evaluation model (eval_artifact), which "
            f"was fitted on the other {result.n_train} rows and never saw them"
        ),
        "cv_score": f"inner cross-validation of the tuning search on the {result.n_train} train-split rows",
        "comparison": "inner cross-validation of each candidate on the train split (capped to the compare row cap)",
        "served model": (
            f"the artifact that scores was refitted with the chosen settings on {result.n_served} rows: the "
            f"train split and the holdout; it has no honest holdout figures of its own"
        ),
        "predict_rows_per_s": "timing of the evaluation model on the holdout rows",
    }


def background_sample(labelled: pd.DataFrame, random_state: int, rows: int = 50) -> list[dict[str, Any]]:
    """A few training customers' attributes (JSON-safe) stored with a model version for segmentation.explain."""
    from segmentation.jsonsafe import json_safe

    sample = labelled.loc[:, list(ATTRIBUTE_COLUMNS)]
    return json_safe(sample.sample(n=min(rows, len(sample)), random_state=random_state).to_dict(orient="records"))


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in ("accuracy", "macro_f1", "log_loss") if k in metrics}


def evaluate_and_promote(
    run_id: str,
    version: int,
    *,
    force: bool = False,
    url: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The promotion gate (segmentation.gate) on today's stable holdout, which neither model was fitted on.

    Both sides are the versions' evaluation models (fitted without the stable holdout); the served models
    were refitted on the holdout too, so comparing them there would reward memory, not skill.
    """
    from segmentation.labelled import holdout_mask
    from segmentation.metrics import evaluate

    settings = settings or get_settings()
    url = url or training_database_url(settings)  # the login that may promote model versions
    key = signing.signing_key(settings)
    with _step(run_id, "promote", url) as (cur, figures):
        current = registry.champion(cur)
        labelled = _labelled_features(cur)
        holdout = labelled.loc[holdout_mask(labelled[CUSTOMER_ID], settings.holdout_share)]
        challenger = evaluate(
            registry.load_model(cur, version, settings.model_cache_dir, evaluation=True, key=key), holdout
        )
        figures.update(
            version=version,
            challenger=_headline(challenger),
            rows=f"{len(holdout)} stable-holdout customers; both evaluation models were fitted without them",
        )
        if current is not None and current.version == version:
            decision = gate.GateDecision(
                promoted=False, forced=False, reason=f"version {version} is already the champion"
            )
        else:
            incumbent = None
            if current is not None:
                incumbent = evaluate(
                    registry.load_model(cur, current.version, settings.model_cache_dir, evaluation=True, key=key),
                    holdout,
                )
                figures["champion"] = {"version": current.version, **_headline(incumbent)}
            decision = gate.decide(
                challenger,
                incumbent,
                margin=settings.promotion_margin,
                force=force,
                champion_version=current.version if current else None,
                rows=len(holdout),
            )
            if decision.promoted:
                registry.promote(cur, version, reason=decision.reason, forced=decision.forced)
            else:
                registry.reject(cur, version, decision.reason)
        figures.update(promoted=decision.promoted, forced=decision.forced, reason=decision.reason)
    if not decision.promoted and current is not None and current.version != version:
        alerts.raise_alert(
            "challenger_refused",
            f"model version {version} was not promoted: {decision.reason}",
            run_id=run_id,
            task_id="promote",
            details={"version": version, "champion": current.version},
            url=url,
            settings=settings,
        )
    log.info("model version %d %s: %s", version, "promoted" if decision.promoted else "not promoted", decision.reason)
    return figures


def promote_version(
    run_id: str,
    version: int,
    *,
    user: str,
    reason: str = "",
    url: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Make ``version`` the champion on an operator's word (promotion or rollback), recording who did it.

    With the training login. ``changed`` is False when the version already was the champion before this run;
    a retry of a run that had committed reports True again, so that its champion Asset event is not lost.
    """
    settings = settings or get_settings()
    url = url or training_database_url(settings)  # the login that may promote model versions
    marker = f"run {run_id}"
    with connect(url) as conn, conn.cursor() as cur:
        locks.xact_lock(cur, locks.PROMOTION)
        before = registry.champion(cur)
        try:
            target = registry.get_version(cur, version)
        except ModelError as exc:
            raise NotFoundError(str(exc)) from exc
        if target.status == "champion":
            cur.execute(
                "SELECT strpos(coalesce(notes, ''), %s) > 0 FROM segmentation.model_versions WHERE version = %s",
                (marker, version),
            )
            changed = bool(cur.fetchone()[0])
            action = "promoted" if changed else "none: already the champion"
        else:
            rollback = target.status == "retired" and before is not None and version < before.version
            action = "rolled back to" if rollback else "promoted"
            note = f"{action} by {user} ({marker}{'; ' + reason if reason else ''})"
            registry.promote(cur, version, reason=note)
            cur.execute("UPDATE segmentation.model_versions SET promoted_by = %s WHERE version = %s", (user, version))
            changed = True
    log.info("model version %d: %s by %s (%s)", version, action, user, marker)
    return {"version": version, "action": action, "changed": changed, "promoted_by": user,
            "previous": before.version if before else None}  # fmt: skip


def retrain_if_due(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Nightly: train and gate a new model when none exists or the champion is older than the interval."""
    url, settings = _where(url, settings)
    with connect(url) as conn, conn.cursor() as cur:
        due = retrain_due(cur, run_id, settings)
    if due is None:
        log.info("no retrain due")
        return {"trained": False}
    trigger, reason = due
    log.info("retrain due (%s): %s", trigger, reason)
    if trigger == "drift":
        alerts.raise_alert(
            "drift_retrain",
            f"retraining: {reason}",
            run_id=run_id,
            task_id="retrain_if_due",
            url=url,
            settings=settings,
        )
    trained = train(run_id, trigger=trigger, settings=settings)
    decision = evaluate_and_promote(run_id, trained["version"], settings=settings)
    return {
        "trained": True,
        "trigger": trigger,
        "reason": reason,
        "version": trained["version"],
        "promoted": decision["promoted"],
    }


def plan_scoring(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> list[dict[str, int]]:
    """Plan the run's scoring (an increment of the queued changes, or a full rescore) in shards; one mapped task
    per returned item."""
    url, settings = _where(url, settings)
    with _step(run_id, "plan", url) as (cur, figures):
        current = registry.champion(cur)
        if current is None:
            raise ModelError(
                "no champion model to score with; run `segmentation train` or the segmentation_retrain DAG"
            )
        planned = planning.plan(
            cur,
            run_id=run_id,
            model_version=current.version,
            shard_size=settings.shard_size,
            max_shards=settings.max_shards,
        )
        figures.update(model_version=current.version, mode=planned.mode, shards=planned.shards, rows=planned.rows)
        cur.execute(
            "UPDATE segmentation.pipeline_runs SET model_version = %s WHERE run_id = %s",
            (current.version, run_id),
        )
    return [{"shard": s, "model_version": current.version} for s in range(planned.shards)]


def score_shard(
    run_id: str, shard: int, model_version: int, *, url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Score one planned shard with the given model version, atomically."""
    url, settings = _where(url, settings)
    with _step(run_id, f"score_shard_{shard}", url) as (cur, figures):
        planned = planning.load(cur, run_id)
        loading = time.perf_counter()
        model = registry.load_model(cur, model_version, settings.model_cache_dir, key=signing.signing_key(settings))
        # Unpickling imports scikit-learn: a fixed cost per process, whatever the shard's size.
        load_seconds = round(time.perf_counter() - loading, 3)
        with threadpool_limits(settings.threads):
            if planned.mode == planning.REBUILD:
                result = rebuild.score_range(
                    cur,
                    model,
                    run_id=run_id,
                    shard=shard,
                    model_version=model_version,
                    table=planned.table,
                    bounds=planned.bounds,
                    chunk_size=settings.chunk_size,
                )
            else:
                result = scoring.score_queued(
                    cur,
                    model,
                    run_id=run_id,
                    shard=shard,
                    model_version=model_version,
                    chunk_size=settings.chunk_size,
                )
        figures.update(
            mode=planned.mode,
            rows=result.rows,
            changed_segments=result.changed_segments,
            phases={"load": load_seconds, **result.phases},
            worker=worker_identity(settings),
        )
    return figures


def worker_identity(settings: Settings) -> str:
    """Which worker process ran a task: ``worker_name:pid``."""
    return f"{settings.worker_name}:{os.getpid()}"


def finalise(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Close the run: publish a full rescore (swap), totals and data-quality figures in ``drift_metrics``.

    A run that failed before and now succeeds (a re-run of the same run id) is marked 'success' again. A
    segment share that moved more than ``SEGMENTATION_SHARE_ALERT`` points since the last run raises an alert.
    Returns the run's counts (customers, per segment, scored this run, reject share), which the nightly DAG
    puts in the extra of its ``segmentation.customer_segments`` Asset event.
    """
    url, settings = _where(url, settings)
    with _step(run_id, "finalise", url) as (cur, figures):
        phases = dict.fromkeys(("publish", "metrics", "distributions"), 0.0)
        lap = time.perf_counter()
        figures.update(planning.publish(cur, run_id))
        lap = scoring.add_lap(phases, "publish", lap)
        cur.execute("SELECT segment, customers FROM segmentation.segment_counts")
        counts = {segment: int(n) for segment, n in cur.fetchall()}
        cur.execute(
            """SELECT coalesce(sum((value->>'rows')::bigint), 0) FROM segmentation.pipeline_runs, jsonb_each(steps)
               WHERE run_id = %s AND starts_with(key, 'score_shard_')""",
            (run_id,),
        )
        scored = int(cur.fetchone()[0])
        figures.update(record_run_metrics(cur, run_id, segment_counts=counts, scored=scored))
        moved = share_moves(cur, run_id, settings.share_alert_points)
        lap = scoring.add_lap(phases, "metrics", lap)
        figures["distributions"] = refresh_segment_distributions(cur, run_id, counts=counts, scored=scored)
        scoring.add_lap(phases, "distributions", lap)
        figures.update(
            customers=sum(counts.values()),
            segment_counts=counts,
            phases={k: round(v, 3) for k, v in phases.items()},
        )
        cur.execute(
            """UPDATE segmentation.pipeline_runs SET status = 'success', finished_at = now(),
                      failed_task = NULL, error = NULL
               WHERE run_id = %s""",
            (run_id,),
        )
    if moved:
        text = ", ".join(f"{s} {m['before']:.1%} -> {m['after']:.1%}" for s, m in moved.items())
        alerts.raise_alert(
            "share_moved",
            f"segment shares moved more than {settings.share_alert_points:g} points since run "
            f"{next(iter(moved.values()))['since_run']}: {text}",
            run_id=run_id,
            task_id="finalise",
            details=moved,
            url=url,
            settings=settings,
        )
    return figures


def segments_event_extra(run_id: str, counts: dict[str, Any]) -> dict[str, Any]:
    """The extra of the ``segmentation.customer_segments`` Asset event: small JSON counts of the run."""
    keys = ("customers", "segment_counts", "segment_shares", "scored_this_run", "reject_share")
    return {"run_id": run_id, **{k: counts[k] for k in keys if k in counts}}


def crm_export_summary(
    event_extras: list[dict[str, Any]], *, url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """What a CRM export of the refreshed runs would send: per run, its counts and its segment changes."""
    url, settings = _where(url, settings)
    runs = [e["run_id"] for e in event_extras if e.get("run_id")]
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT run_id, count(*) FROM segmentation.segment_changes WHERE run_id = ANY(%s) GROUP BY run_id""",
            (runs,),
        )
        changes = dict(cur.fetchall())
    summary = {"runs": [{**e, "segment_changes": int(changes.get(e.get("run_id"), 0))} for e in event_extras]}
    log.info("CRM export (example): %s", summary)
    return summary


def score_all(
    run_id: str, *, url: str | None = None, settings: Settings | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Plan and score every shard in this process (the CLI's path; Airflow maps the shards instead).

    ``progress`` wraps the planned shards, e.g. in a progress bar.
    """
    url, settings = _where(url, settings)
    planned = plan_scoring(run_id, url=url, settings=settings)
    shards = progress(planned) if progress else planned
    results = [score_shard(run_id, p["shard"], p["model_version"], url=url, settings=settings) for p in shards]
    publish_scoring(run_id, url=url, settings=settings)
    return {"shards": len(planned), "rows": sum(r["rows"] for r in results)}


def publish_scoring(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Swap a run's full rescore in (finalise does it too; the second call does nothing)."""
    url, settings = _where(url, settings)
    with _step(run_id, "publish", url) as (cur, figures):
        figures.update(planning.publish(cur, run_id))
    return figures


def run_nightly(
    run_id: str | None = None,
    *,
    url: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The whole nightly run in one process: clean, features, retrain when due, score, finalise."""
    run_id = run_id or new_run_id()
    url, settings = _where(url, settings)
    start_run(run_id, "cli", url=url, settings=settings)
    summary = {
        "run_id": run_id,
        "clean": clean(run_id, url=url, settings=settings),
        "features": build_features(run_id, url=url, settings=settings),
        "retrain": retrain_if_due(run_id, url=url, settings=settings),
        "score": score_all(run_id, url=url, settings=settings, progress=progress),
    }
    summary["finalise"] = finalise(run_id, url=url, settings=settings)
    return summary
