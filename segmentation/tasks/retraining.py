"""Training and the gate: retrain when due, train and register a challenger, gate it against the champion on
the stable holdout, and promote or roll back on an operator's word."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd
from threadpoolctl import threadpool_limits

from segmentation import alerts, gate, locks, registry, signing
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, SEGMENT, SEGMENTS
from segmentation.config import Settings, get_settings
from segmentation.db import connect, training_database_url
from segmentation.errors import ModelError, NotFoundError
from segmentation.monitoring import current_drift, record_drift, reference_distributions
from segmentation.tasks.prepare import labelled_features
from segmentation.tasks.review import announce_pending, hold_for_review
from segmentation.tasks.runs import step, where

if TYPE_CHECKING:
    from segmentation.training import TrainingOptions, TrainingResult

log = logging.getLogger(__name__)

# Fewest labelled customers per segment that training accepts.
MIN_LABELS_PER_SEGMENT = 20


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
    with step(run_id, "train", url, settings) as (cur, figures):
        labelled = labelled_features(cur)
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
    from segmentation.metrics import evaluate_with_rows

    settings = settings or get_settings()
    url = url or training_database_url(settings)  # the login that may promote model versions
    key = signing.signing_key(settings)
    with step(run_id, "promote", url, settings) as (cur, figures):
        current = registry.champion(cur)
        labelled = labelled_features(cur)
        holdout = labelled.loc[holdout_mask(labelled[CUSTOMER_ID], settings.holdout_share)]
        challenger, challenger_rows = evaluate_with_rows(
            registry.load_model(cur, version, settings.model_cache_dir, evaluation=True, key=key), holdout
        )
        figures.update(
            version=version,
            challenger=_headline(challenger),
            rows=f"{len(holdout)} stable-holdout customers; both evaluation models were fitted without them",
        )
        held, body = False, None
        if current is not None and current.version == version:
            decision = gate.GateDecision(
                promoted=False, forced=False, reason=f"version {version} is already the champion"
            )
        else:
            incumbent, paired = None, None
            if current is not None:
                incumbent, incumbent_rows = evaluate_with_rows(
                    registry.load_model(cur, current.version, settings.model_cache_dir, evaluation=True, key=key),
                    holdout,
                )
                figures["champion"] = {"version": current.version, **_headline(incumbent)}
                paired = paired_test(challenger_rows, incumbent_rows, settings)
            decision = gate.decide(
                challenger,
                incumbent,
                margin=settings.promotion_margin,
                paired=paired,
                force=force,
                champion_version=current.version if current else None,
                rows=len(holdout),
            )
            # With approval required, a challenger that passed (or was forced past) the gate waits for a person;
            # the first model replaces nothing, and scoring cannot start without one, so it is not held.
            held = decision.promoted and settings.promotion_approval == "required" and current is not None
            if held:
                body = hold_for_review(
                    cur, run_id, version, champion_version=current.version if current else None,
                    challenger=challenger, champion=incumbent, reason=decision.reason,
                    holdout_rows=len(holdout), settings=settings, key=key,
                )  # fmt: skip
            elif decision.promoted:
                registry.promote(cur, version, reason=decision.reason, forced=decision.forced)
            else:
                registry.reject(cur, version, decision.reason)
        figures.update(
            promoted=decision.promoted and not held,
            forced=decision.forced,
            reason=decision.reason,
            awaiting_review=held,
        )
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
    if held:
        announce_pending(run_id, version, url=url, settings=settings)
    log.info("model version %d %s: %s", version, figures_outcome(figures), decision.reason)
    return {**figures, "review_body": body}  # the body goes to the review task, not to pipeline_runs


def figures_outcome(figures: dict[str, Any]) -> str:
    """How the gate step ended, in words."""
    if figures.get("awaiting_review"):
        return "awaits approval"
    return "promoted" if figures.get("promoted") else "not promoted"


def paired_test(challenger: pd.DataFrame, champion: pd.DataFrame, settings: Settings) -> gate.PairedTest:
    """The gate's paired test of two models' row outcomes (segmentation.metrics.row_outcomes) on the same
    holdout customers, at the configured level."""
    return gate.paired_test(
        challenger["truth"].to_numpy(),
        challenger["predicted"].to_numpy(),
        champion["predicted"].to_numpy(),
        challenger["loss"].to_numpy(),
        champion["loss"].to_numpy(),
        level=settings.gate_level,
        resamples=settings.gate_resamples,
        seed=settings.random_state,
    )


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
    with connect(url, settings) as conn, conn.cursor() as cur:
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
    url, settings = where(url, settings)
    with connect(url, settings) as conn, conn.cursor() as cur:
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
