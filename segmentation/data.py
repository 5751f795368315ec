"""Customer files in the Kaggle layout: reading keeps every value as the raw string from the file (cleaning
validates types later), and writing produces the same layout (synthetic customers: ``segmentation.synthetic``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import IO

import pandas as pd

from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, KAGGLE_COLUMNS, SEGMENT
from segmentation.errors import DataError

logger = logging.getLogger(__name__)

CsvSource = str | Path | IO[str]

_REQUIRED_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, *ATTRIBUTE_COLUMNS)
_OUR_TO_KAGGLE: dict[str, str] = {ours: kaggle for kaggle, ours in KAGGLE_COLUMNS.items()}
_HEADER_LOOKUP: dict[str, str] = {kaggle.lower(): ours for kaggle, ours in KAGGLE_COLUMNS.items()}
_EXPECTED_HEADER = ",".join(_OUR_TO_KAGGLE[c] for c in (*_REQUIRED_COLUMNS, SEGMENT))


# --------------------------------------------------------------------------------------------------
# Reading and writing the Kaggle layout
# --------------------------------------------------------------------------------------------------


def _normalise_header(name: object) -> str:
    """Header cell -> lookup key: BOM and surrounding whitespace removed, lower case."""
    return str(name).replace("\ufeff", "").strip().lower()


def _label(source: CsvSource) -> str:
    """Name of a source for messages: the path, or the stream's name."""
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "name", "<stream>"))


def _read_raw(source: CsvSource, label: str) -> pd.DataFrame:
    """Parse the CSV with no header interpretation and no type conversion (row 0 is the header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                source,
                header=None,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                index_col=False,
                encoding="utf-8-sig",
                encoding_errors="replace",
                on_bad_lines="error",
            )
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty; expected the header {_EXPECTED_HEADER}") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{label}: not a well-formed CSV ({detail})") from exc
    except OSError as exc:
        raise DataError(f"{label}: cannot read the file ({exc})") from exc


def _map_headers(raw_header: list[object], label: str) -> dict[int, str]:
    """Position -> our column name for every known header; drop-and-warn unknown ones."""
    positions: dict[int, str] = {}
    seen: dict[str, object] = {}
    unknown: list[str] = []
    for pos, cell in enumerate(raw_header):
        ours = _HEADER_LOOKUP.get(_normalise_header(cell))
        if ours is None:
            unknown.append(str(cell))
            continue
        if ours in seen:
            duplicate = f"{label}: header {cell!r} duplicates {seen[ours]!r}"
            raise DataError(f"{duplicate}; expected each of {_EXPECTED_HEADER} once")
        seen[ours] = cell
        positions[pos] = ours
    missing = [_OUR_TO_KAGGLE[c] for c in _REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise DataError(
            f"{label}: missing required header(s) {', '.join(missing)}; "
            f"expected the header {_EXPECTED_HEADER} (Segmentation optional)"
        )
    if unknown:
        logger.warning("%s: dropping unknown column(s) %s", label, ", ".join(repr(u) for u in unknown))
    return positions


def _as_object_strings(values: pd.Series) -> pd.Series:
    """Raw string column -> object dtype holding str, with empty fields as None."""
    array = values.to_numpy(dtype=object, copy=True)
    array[array == ""] = None
    return pd.Series(array, dtype=object)


def read_kaggle_csv(source: CsvSource) -> pd.DataFrame:
    """Read a Kaggle-layout customer CSV as raw strings (None for empty fields), renamed to our columns."""
    label = _label(source)
    raw = _read_raw(source, label)
    positions = _map_headers(raw.iloc[0].tolist(), label)
    body = raw.iloc[1:]
    by_name = {ours: _as_object_strings(body.iloc[:, pos]) for pos, ours in positions.items()}
    order = [*_REQUIRED_COLUMNS, *([SEGMENT] if SEGMENT in by_name else [])]
    frame = pd.DataFrame({name: by_name[name] for name in order}, columns=order)
    logger.info("%s: read %d customer row(s), segment column: %s", label, len(frame), SEGMENT in by_name)
    return frame


def write_kaggle_csv(df: pd.DataFrame, target: CsvSource) -> None:
    """Write our columns with Kaggle headers (Segmentation only if ``segment`` exists); missing -> empty."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"cannot write customers: missing column(s) {', '.join(missing)}")
    columns = [*_REQUIRED_COLUMNS, *([SEGMENT] if SEGMENT in df.columns else [])]
    out = df.loc[:, columns].rename(columns=_OUR_TO_KAGGLE)
    out.to_csv(target, index=False, na_rep="", lineterminator="\n")
    logger.info("wrote %d customer row(s)", len(out))
