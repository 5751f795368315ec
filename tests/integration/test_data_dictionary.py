"""The analyst views are documented in the database, and README's data dictionary is generated from it."""

from __future__ import annotations

import pytest

from segmentation import cli, dictionary
from segmentation.config import PROJECT_ROOT
from segmentation.db import connect
from tests.helpers import execute

pytestmark = pytest.mark.db

README = PROJECT_ROOT / "README.md"
REGENERATE = "regenerate it: `segmentation init-db && segmentation data-dictionary --readme README.md`"


def described(url: str) -> list[dictionary.View]:
    with connect(url) as conn, conn.cursor() as cur:
        return dictionary.describe(cur)


def test_every_analyst_view_and_each_of_its_columns_has_a_comment(fresh_db: str) -> None:
    views = described(fresh_db)
    assert dictionary.missing(views) == []
    assert [v.name for v in views] == list(dictionary.ANALYST_VIEWS)
    assert all(v.columns for v in views)
    assert dictionary.undocumented(views) == []
    # A column added without a comment is caught.
    execute(
        "CREATE OR REPLACE VIEW segmentation.segment_changes AS SELECT *, 1 AS extra FROM segmentation.segment_changes"
    )
    assert dictionary.undocumented(described(fresh_db)) == ["segment_changes.extra"]


def test_readme_data_dictionary_is_the_one_the_database_generates(fresh_db: str) -> None:
    generated = dictionary.render(described(fresh_db))
    assert dictionary.section(README.read_text()) == generated, f"README's data dictionary is out of date; {REGENERATE}"


def test_the_command_prints_and_rewrites_the_section(fresh_db: str, tmp_path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["data-dictionary"]) == 0
    printed = capsys.readouterr().out
    assert printed == dictionary.render(described(fresh_db))
    assert "#### `segmentation.realised_quality_daily`" in printed and "| `macro_f1` | double precision |" in printed
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{dictionary.START}\nold text\n{dictionary.END}\n\nafter\n")
    assert cli.main(["data-dictionary", "--readme", str(page)]) == 0
    text = page.read_text()
    assert "old text" not in text and text.startswith("# Title\n") and text.endswith(f"{dictionary.END}\n\nafter\n")
    assert dictionary.section(text) == printed
    page.write_text("no markers\n")
    assert cli.main(["data-dictionary", "--readme", str(page)]) == 2
    assert "data-dictionary:start" in capsys.readouterr().err
