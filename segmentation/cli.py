"""``segmentation <command>``: every pipeline step from the command line, without Airflow."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from segmentation.columns import ALLOWED_CATEGORIES, ATTRIBUTE_COLUMNS
from segmentation.config import Settings, get_settings
from segmentation.errors import DatabaseError, DataError, ModelError, SegmentationError
from segmentation.identifiers import parse_customer_id

log = logging.getLogger("segmentation.cli")


def _emit(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _settings(args: argparse.Namespace) -> Settings:
    """The command's settings with the customer database resolved, once per command: ``SEGMENTATION_DATABASE_URL``,
    else the embedded server (started here when needed). Read at this edge and passed down as values."""
    if getattr(args, "resolved", None) is None:
        from segmentation.db import database_label, resolve_database_url

        args.resolved = replace(args.settings, database_url=resolve_database_url(args.settings))
        log.info("customer database: %s", database_label(str(args.resolved.database_url)))
    return args.resolved


def _url(args: argparse.Namespace) -> str:
    return str(_settings(args).database_url)


def _key(args: argparse.Namespace) -> bytes:
    from segmentation.signing import signing_key

    return signing_key(_settings(args))


def cmd_init_db(args: argparse.Namespace) -> None:
    from segmentation.db import redact
    from segmentation.migrations import apply_roles, migrate

    settings, url = _settings(args), _url(args)
    applied = migrate(url, settings.sql_dir)
    if args.roles:
        apply_roles(url, settings.sql_dir)
    _emit({"database": redact(url), "applied": applied, "roles": bool(args.roles)})


def cmd_db_url(args: argparse.Namespace) -> None:
    from segmentation.db import airflow_connection_json, sibling_database_url

    url = sibling_database_url(args.database, _settings(args)) if args.database else _url(args)
    if args.driver:
        url = url.replace("postgresql://", f"postgresql+{args.driver}://", 1)
    print(airflow_connection_json(url) if args.airflow_conn else url)


def cmd_load_csv(args: argparse.Namespace) -> None:
    from segmentation.data import read_kaggle_csv
    from segmentation.loading import load_customers
    from segmentation.tasks import new_run_id

    raw = read_kaggle_csv(args.path)
    _emit(load_customers(raw, run_id=new_run_id("load"), url=_url(args)).as_dict())


def cmd_generate(args: argparse.Namespace) -> None:
    from segmentation.data import write_kaggle_csv
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers
    from segmentation.tasks import new_run_id

    frame = generate_customers(args.rows, labelled_share=args.labelled_share, seed=args.seed, start_id=args.start_id)
    if args.out:
        write_kaggle_csv(frame, args.out)
        _emit({"written": str(args.out), "rows": len(frame)})
        return
    _emit(load_customers(to_raw_text(frame), run_id=new_run_id("generate"), url=_url(args)).as_dict())


def cmd_clean(args: argparse.Namespace) -> None:
    from segmentation import tasks

    run_id = tasks.start_run(args.run_id or tasks.new_run_id(), settings=_settings(args))
    _emit(tasks.clean(run_id, settings=_settings(args)))


def cmd_features(args: argparse.Namespace) -> None:
    from segmentation import tasks

    run_id = tasks.start_run(args.run_id or tasks.new_run_id(), settings=_settings(args))
    _emit(tasks.build_features(run_id, settings=_settings(args)))


def cmd_train(args: argparse.Namespace) -> None:
    from segmentation import tasks

    settings = _settings(args)
    run_id = tasks.start_run(args.run_id or tasks.new_run_id("train"), settings=settings)
    trained = tasks.train(
        run_id,
        trigger="manual",
        settings=settings,
        candidates=args.candidates.split(",") if args.candidates else None,
        cv_folds=args.cv_folds,
        row_cap=args.row_cap,
    )
    decision = (
        {"promoted": False, "reason": "--no-promote"}
        if args.no_promote
        else tasks.evaluate_and_promote(run_id, trained["version"], force=args.force_promote, settings=settings)
    )
    _emit({"train": trained, "promotion": decision})


def cmd_score(args: argparse.Namespace) -> None:
    from segmentation import tasks

    settings = _settings(args)
    run_id = tasks.start_run(args.run_id or tasks.new_run_id(), settings=settings)
    scored = tasks.score_all(run_id, settings=settings, progress=_shard_progress)
    _emit(scored | {"finalise": tasks.finalise(run_id, settings=settings)})


def cmd_run(args: argparse.Namespace) -> None:
    from segmentation import tasks

    _emit(tasks.run_nightly(args.run_id, settings=_settings(args), progress=_shard_progress))


def _shard_progress(shards: list[dict[str, int]]) -> Iterable[dict[str, int]]:
    """A progress bar over the shards on stderr (stdout stays the JSON summary)."""
    from rich.console import Console
    from rich.progress import track

    return track(shards, description="scoring shards", console=Console(stderr=True), total=len(shards))


def cmd_predict(args: argparse.Namespace) -> None:
    from segmentation.predict import predict_one

    values = {c: getattr(args, c) for c in ATTRIBUTE_COLUMNS}
    _emit(predict_one(values, _settings(args)))


def cmd_explain(args: argparse.Namespace) -> None:
    from segmentation.db import connect
    from segmentation.explain import explain_customer

    settings = _settings(args)
    with connect(_url(args), settings) as conn, conn.cursor() as cur:
        _emit(explain_customer(cur, args.customer_id, cache_dir=settings.model_cache_dir, key=_key(args)))


def cmd_report(args: argparse.Namespace) -> None:
    from segmentation.report import segment_report

    print(segment_report(_url(args)))


def cmd_model_list(args: argparse.Namespace) -> None:
    from segmentation import registry
    from segmentation.db import connect
    from segmentation.report import format_table

    with connect(_url(args)) as conn, conn.cursor() as cur:
        print(format_table(registry.list_versions(cur)))


def cmd_model_promote(args: argparse.Namespace) -> None:
    from segmentation import registry
    from segmentation.db import connect, training_database_url

    with connect(training_database_url(_settings(args))) as conn, conn.cursor() as cur:
        registry.promote(cur, args.version, reason=args.reason, forced=True)
    _emit({"champion": args.version, "reason": args.reason})


def cmd_model_sign(args: argparse.Namespace) -> None:
    from segmentation import registry
    from segmentation.db import connect, training_database_url

    with connect(training_database_url(_settings(args))) as conn, conn.cursor() as cur:
        signature = registry.sign_version(cur, args.version, key=_key(args))
    _emit({"signed": args.version, "artifact_hmac": signature[:12] + "…"})


def cmd_data_dictionary(args: argparse.Namespace) -> None:
    from pathlib import Path

    from segmentation import dictionary
    from segmentation.db import connect

    with connect(_url(args)) as conn, conn.cursor() as cur:
        described = dictionary.describe(cur)
    if absent := dictionary.missing(described):
        log.warning("analyst views not in this database (left out): %s", absent)
    text = dictionary.render(described)
    if not args.readme:
        print(text, end="")
        return
    path = Path(args.readme)
    path.write_text(dictionary.replace_section(path.read_text(), text))
    _emit({"written": str(path), "views": [v.name for v in described]})


# Commands that need no customer database schema (``generate`` only when it writes a CSV).
NO_SCHEMA_COMMANDS = ("init-db", "db-url")
# Commands that make the next step themselves on an empty database.
LOADING_COMMANDS = ("load-csv", "generate")
RUN_HINT = "or `segmentation run` for every step"


def check_ready(args: argparse.Namespace) -> None:
    """A one-line error naming the next step when the database is not ready for ``args.command``.

    Runs before every command, so a ready database costs a few EXISTS probes whatever its size; the counts in
    training's errors are read only when training is not ready.
    """
    if args.command in NO_SCHEMA_COMMANDS or (args.command == "generate" and args.out):
        return
    from segmentation.migrations import check_schema, labelled_counts

    url = _url(args)
    state = check_schema(url, args.settings.sql_dir, training=args.command == "train")
    if args.command in (*LOADING_COMMANDS, "predict", "data-dictionary"):  # predict checks its input first
        return
    if args.command == "model":
        if not state.model_versions:
            raise ModelError(f"no model versions yet: run `segmentation train` ({RUN_HINT}) after loading customers")
        return
    if not state.customers:
        raise DataError(
            "no customers loaded yet: load them with `segmentation load-csv PATH` or `segmentation generate`, "
            "then run `segmentation run`"
        )
    if args.command == "train" and not state.labelled_features:
        counts = labelled_counts(url)
        if not counts.labelled:
            raise DataError(
                "no labelled customers: load a CSV with a Segmentation column (`segmentation load-csv PATH`) "
                "or `segmentation generate`"
            )
        if not counts.labelled_clean:
            raise DataError(
                f"the {counts.labelled} labelled customers are loaded but not cleaned yet: run `segmentation clean` "
                f"and `segmentation features` first, {RUN_HINT}"
            )
        if not counts.labelled_features:
            raise DataError(
                f"the {counts.labelled_clean} clean labelled customers have no feature rows yet: run "
                f"`segmentation features` first, {RUN_HINT}"
            )
    if args.command in ("score", "report") and not state.model_versions:
        raise ModelError(f"no model yet: run `segmentation train` ({RUN_HINT})")


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="segmentation", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    init = add("init-db", cmd_init_db, "apply the SQL migrations in sql/ (idempotent)")
    init.add_argument("--roles", action="store_true", help="also create the pipeline and analyst roles (sql/roles.sql)")
    url = add("db-url", cmd_db_url, "print the customer database URL (starting the embedded server if needed)")
    url.add_argument("--database", help="another database on the same server, created if missing")
    url.add_argument("--driver", help="SQLAlchemy driver suffix, e.g. psycopg2")
    url.add_argument("--airflow-conn", action="store_true", help="print it as an Airflow connection (JSON)")
    load = add("load-csv", cmd_load_csv, "load a Kaggle-layout CSV into customers (and customer_labels)")
    load.add_argument("path")
    gen = add("generate", cmd_generate, "generate synthetic customers and load them (or write a CSV)")
    gen.add_argument("--rows", type=int, default=50_000)
    gen.add_argument("--labelled-share", type=float, default=0.3)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--start-id", type=int, default=1)
    gen.add_argument("--out", help="write a Kaggle-layout CSV instead of loading")
    for name, func, text in (
        ("clean", cmd_clean, "validate new and changed customers; quarantine bad rows"),
        ("features", cmd_features, "build feature rows for new and changed clean customers"),
        ("score", cmd_score, "score every customer that needs it with the champion"),
        ("run", cmd_run, "the whole nightly pipeline in this process"),
    ):
        add(name, func, text).add_argument("--run-id")
    train = add("train", cmd_train, "train, register and (through the gate) promote a model")
    train.add_argument("--run-id")
    train.add_argument("--candidates", help="comma-separated candidate names")
    train.add_argument("--cv-folds", type=int)
    train.add_argument("--row-cap", type=int)
    train.add_argument("--force-promote", action="store_true")
    train.add_argument("--no-promote", action="store_true")
    predict = add("predict", cmd_predict, "score one customer given on the command line")
    for column in ATTRIBUTE_COLUMNS:
        allowed = ALLOWED_CATEGORIES.get(column)
        predict.add_argument(
            f"--{column.replace('_', '-')}",
            dest=column,
            help=f"one of {', '.join(allowed)}" if allowed else "a number",
        )
    explain = add("explain", cmd_explain, "why a scored customer is in its segment: top reasons, as JSON")
    explain.add_argument("customer_id", help="the customer's id")
    add("report", cmd_report, "segment summary, model and segment profiles, and how to query them")
    dictionary = add("data-dictionary", cmd_data_dictionary, "the analyst views and columns, from their SQL comments")
    dictionary.add_argument("--readme", help="rewrite the data dictionary section of this Markdown file instead")
    model = add("model", lambda a: model.print_help(), "the model registry")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    listing = model_sub.add_parser("list", help="registry history as a table")
    listing.set_defaults(func=cmd_model_list)
    promote = model_sub.add_parser("promote", help="make VERSION the champion (rollback or override)")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="promoted by an operator")
    promote.set_defaults(func=cmd_model_promote)
    sign = model_sub.add_parser(
        "sign", help="re-sign VERSION's stored artifact with the signing key (after checking it is trusted)"
    )
    sign.add_argument("version", type=int)
    sign.set_defaults(func=cmd_model_sign)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segmentation`` console script."""
    args = build_parser().parse_args(argv)
    args.resolved = None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.settings = get_settings()  # read once, here; a bad setting is a one-line error naming it
        if args.command == "explain":  # a malformed id is reported before the database is asked anything
            args.customer_id = parse_customer_id(args.customer_id.strip())
        check_ready(args)
        args.func(args)
    except SegmentationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A database error the checks did not foresee: one line, not a traceback (-v logs it in full).
        if type(exc).__module__.split(".")[0] not in ("psycopg2", "sqlalchemy"):
            raise
        log.debug("database error", exc_info=True)
        hint = "; run `segmentation init-db`" if type(exc).__name__ in ("UndefinedTable", "InvalidSchemaName") else ""
        print(f"error: {DatabaseError.__name__}: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
