"""The data dictionary's Markdown and README section handling, and the realised-quality settings and rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segmentation import dictionary, realised
from segmentation.config import get_settings
from segmentation.errors import ConfigError, DataError

VIEW = dictionary.View(
    "segment_summary",
    "One row | per segment.",
    (dictionary.Column("segment", "character(1)", "Segment,\n A to D."), dictionary.Column("share", "numeric", "")),
)


def test_render_writes_a_table_per_view_and_escapes_pipes() -> None:
    assert dictionary.render([VIEW]) == (
        "#### `segmentation.segment_summary`\n\nOne row \\| per segment.\n\n"
        "| column | type | meaning |\n|---|---|---|\n"
        "| `segment` | character(1) | Segment, A to D. |\n| `share` | numeric |  |\n"
    )
    assert dictionary.undocumented([VIEW]) == ["segment_summary.share"]
    assert dictionary.missing([VIEW], ("segment_summary", "segment_feed")) == ["segment_feed"]


def test_the_section_between_the_markers_is_read_and_replaced_in_place() -> None:
    text = f"before\n{dictionary.START}\nold\n{dictionary.END}\nafter\n"
    assert dictionary.section(text) == "old\n"
    replaced = dictionary.replace_section(text, "new\nlines\n")
    assert replaced == f"before\n{dictionary.START}\nnew\nlines\n{dictionary.END}\nafter\n"
    assert dictionary.replace_section(replaced, "new\nlines\n") == replaced
    for broken in ("no markers", f"{dictionary.END}\n{dictionary.START}"):
        with pytest.raises(DataError, match="data-dictionary:start"):
            dictionary.section(broken)


def test_realised_settings_default_and_are_range_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert (settings.realised_margin, settings.realised_min_labels) == (0.05, 200)
    monkeypatch.setenv("SEGMENTATION_REALISED_MARGIN", "1.5")
    with pytest.raises(ConfigError, match=r"SEGMENTATION_REALISED_MARGIN=1.5 is out of range; expected 0.0..1.0"):
        get_settings()
    monkeypatch.setenv("SEGMENTATION_REALISED_MARGIN", "0.1")
    monkeypatch.setenv("SEGMENTATION_REALISED_MIN_LABELS", "0")
    with pytest.raises(ConfigError, match="SEGMENTATION_REALISED_MIN_LABELS=0 is out of range"):
        get_settings()


@pytest.mark.parametrize(
    ("holdout", "realised_accuracy", "labelled", "dropped"),
    [
        (0.80, 0.74, 200, True),  # 6 points below, enough labels
        (0.80, 0.75, 200, False),  # exactly the margin is not more than it
        (0.80, 0.70, 199, False),  # too few labels
        (0.80, 0.90, 500, False),  # better than the holdout
        (None, 0.10, 500, False),  # no holdout accuracy recorded
        (0.80, None, 0, False),  # no late labels yet
    ],
)
def test_a_drop_is_more_than_the_margin_on_enough_labels(
    holdout: float | None, realised_accuracy: float | None, labelled: int, dropped: bool
) -> None:
    figures = {"holdout_accuracy": holdout, "realised_accuracy": realised_accuracy, "labelled": labelled}
    assert realised.is_drop(figures, margin=0.05, min_labels=200) is dropped


def test_the_alert_text_names_both_accuracies_and_the_labels() -> None:
    day = datetime(2026, 11, 2, tzinfo=UTC)
    text = realised.alert_text(
        {"model_version": 3, "holdout_accuracy": 0.8, "realised_accuracy": 0.7, "labelled": 250, "margin": 0.05}
        | {"min_labels": 200, "window_start": day, "window_end": day.replace(day=30)}
    )
    assert text == (
        "realised accuracy of champion v3 is 70.0% on 250 late labels (2026-11-02 to 2026-11-30), 10.0% below its "
        "holdout accuracy of 80.0% (margin 5.0%, at least 200 labels)"
    )
