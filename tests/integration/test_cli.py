"""The ``segmentation`` command line on a real database: every step, predict, report and the registry."""

from __future__ import annotations

import json

import pytest

from segmentation.cli import main
from tests.helpers import scalar

pytestmark = pytest.mark.db


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_every_step_from_the_command_line(fresh_db: str, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    csv = tmp_path / "customers.csv"
    cli(capsys, "generate", "--rows", "1500", "--labelled-share", "0.6", "--seed", "3", "--out", str(csv))
    loaded = json.loads(cli(capsys, "load-csv", str(csv)))
    assert loaded["inserted"] == 1500 and loaded["labels"] == 900
    assert json.loads(cli(capsys, "clean"))["clean"] == 1500
    assert json.loads(cli(capsys, "features"))["rows"] == 1500
    trained = json.loads(cli(capsys, "train", "--candidates", "logistic_regression"))
    assert trained["promotion"]["promoted"] is True
    assert json.loads(cli(capsys, "score"))["rows"] == 1500
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 1500

    predicted = json.loads(
        cli(
            capsys,
            "predict",
            "--gender",
            " male",
            "--ever-married",
            "No",
            "--age",
            "22",
            "--graduated",
            "No",
            "--profession",
            "Healthcare",
            "--work-experience",
            "1",
            "--spending-score",
            "Low",
            "--family-size",
            "4",
            "--var-1",
            "Cat_4",
        )
    )
    assert predicted["segment"] in "ABCD"
    assert sum(predicted["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert predicted["description"].startswith(f"Segment {predicted['segment']}")

    report = cli(capsys, "report")
    assert "Segment summary" in report and "psql '" in report and "Champion: model v1" in report

    cli(capsys, "train", "--candidates", "naive_bayes", "--no-promote")
    listing = cli(capsys, "model", "list")
    assert listing.splitlines()[0].split()[:3] == ["version", "status", "model"]
    assert "champion" in listing and "candidate" in listing
    cli(capsys, "model", "promote", "2", "--reason", "rollback drill")
    assert scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'") == 2
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = 1") == "retired"


def test_bad_input_is_a_clear_error_not_a_traceback(fresh_db: str, capsys) -> None:
    assert main(["predict", "--age", "300", "--gender", "Robot"]) == 2
    err = capsys.readouterr().err
    assert "age_out_of_range" in err and "gender_not_allowed" in err and "Traceback" not in err
    assert main(["load-csv", "/nonexistent/file.csv"]) == 2
    assert main(["model", "promote", "99"]) == 2
    assert "no model versions yet" in capsys.readouterr().err  # an empty registry names the next step


@pytest.mark.parametrize("customer_id", ["0", "-4", "abc", "1.5", "99999999999999999999"])
def test_explain_refuses_what_is_not_a_customer_id_in_the_same_words_as_the_pages(capsys, customer_id: str) -> None:
    # The id is checked before the database is asked anything, by the parser the web app uses too.
    assert main(["explain", customer_id]) == 2
    err = capsys.readouterr().err
    assert err == "error: the customer id must be a positive whole number (1 to 9223372036854775807)\n"
