"""Every CLI command on a database with no schema and on an empty one: success where the command is itself the
next step, otherwise one line naming the next step, exit code 2 and no traceback.

The commands run as a new user would run them: ``python -m segmentation.cli`` in a child process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.cli import build_parser
from segmentation.data import write_kaggle_csv
from segmentation.synthetic import generate_customers
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
PREDICT = [
    "predict", "--gender", "Male", "--ever-married", "No", "--age", "30", "--graduated", "No", "--profession",
    "Artist", "--work-experience", "1", "--spending-score", "Low", "--family-size", "2", "--var-1", "Cat_4",
]  # fmt: skip
INIT_DB = "run `segmentation init-db`"
LOAD = "load them with `segmentation load-csv PATH` or `segmentation generate`"
TRAIN = "run `segmentation train`"
# command line -> what it says on an empty (migrated) database: None means it succeeds there.
COMMANDS: dict[str, tuple[list[str], str | None]] = {
    "init-db": (["init-db"], None),
    "db-url": (["db-url"], None),
    "load-csv": (["load-csv", "{csv}"], None),
    "generate": (["generate", "--rows", "50"], None),
    "generate --out": (["generate", "--rows", "50", "--out", "{out}"], None),
    "clean": (["clean"], LOAD),
    "features": (["features"], LOAD),
    "train": (["train"], LOAD),
    "score": (["score"], LOAD),
    "run": (["run"], LOAD),
    "predict": (PREDICT, TRAIN),
    "report": (["report"], LOAD),
    "model list": (["model", "list"], TRAIN),
    "model promote": (["model", "promote", "1"], TRAIN),
    "model sign": (["model", "sign", "1"], TRAIN),
    "explain": (["explain", "1"], LOAD),
    "data-dictionary": (["data-dictionary"], None),
}
# Commands that work without the schema; every other one names `segmentation init-db`.
WITHOUT_SCHEMA = {"init-db", "db-url", "generate --out"}
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def test_the_table_covers_every_subcommand() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    model = next(a for a in sub.choices["model"]._actions if a.dest == "model_command")
    names = {n for n in sub.choices if n != "model"} | {f"model {n}" for n in model.choices}
    assert names <= {c.split(" --")[0] for c in COMMANDS}, names - set(COMMANDS)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    csv = tmp_path / "customers.csv"
    write_kaggle_csv(generate_customers(60, labelled_share=0.5, seed=1), csv)
    return {"csv": str(csv), "out": str(tmp_path / "out.csv")}


@pytest.fixture
def bare_db(tmp_path: Path):
    """A database where `segmentation init-db` has never run."""
    url = create_database("seg_bare")
    try:
        yield url
    finally:
        drop_database(url)


def cli(url: str, tmp_path: Path, args: list[str], files: dict[str, str]) -> tuple[int, str, list[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEGMENTATION_DATABASE_URL": url,
        "SEGMENTATION_DATA_DIR": str(tmp_path / "data"),
        "SEGMENTATION_MODELS_DIR": str(tmp_path / "models"),
    }
    argv = [a.format(**files) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "segmentation.cli", *argv], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    return done.returncode, done.stderr, lines


def _assert_one_line_error(code: int, stderr: str, lines: list[str], names: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert names in lines[0], lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_on_a_database_with_no_schema(command: str, bare_db: str, tmp_path: Path, files) -> None:
    code, stderr, lines = cli(bare_db, tmp_path, COMMANDS[command][0], files)
    if command in WITHOUT_SCHEMA:
        assert code == 0, stderr
    else:
        _assert_one_line_error(code, stderr, lines, INIT_DB)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_on_an_empty_database(command: str, fresh_db: str, tmp_path: Path, files) -> None:
    args, expected = COMMANDS[command]
    code, stderr, lines = cli(fresh_db, tmp_path, args, files)
    if expected is None:
        assert code == 0, stderr
    else:
        _assert_one_line_error(code, stderr, lines, expected)


def test_train_after_load_csv_without_clean_names_clean_and_features(fresh_db: str, tmp_path: Path, files) -> None:
    assert cli(fresh_db, tmp_path, ["load-csv", "{csv}"], files)[0] == 0
    code, stderr, lines = cli(fresh_db, tmp_path, ["train"], files)
    _assert_one_line_error(code, stderr, lines, "not cleaned yet")
    for step in ("`segmentation clean`", "`segmentation features`", "`segmentation run`"):
        assert step in lines[0]
    assert "load labelled customers" not in lines[0]
    assert cli(fresh_db, tmp_path, ["clean"], files)[0] == 0
    code, stderr, lines = cli(fresh_db, tmp_path, ["train"], files)
    _assert_one_line_error(code, stderr, lines, "`segmentation features`")
