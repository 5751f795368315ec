"""COPY between pandas and PostgreSQL: CSV out, CSV in, and a binary COPY encoder for exact numeric writes."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segmentation.errors import DatabaseError

if TYPE_CHECKING:
    import pandas as pd


def copy_frame_out(
    cur: Any, query: str, params: Sequence[Any] | None = None, dtypes: dict[str, str] | None = None
) -> pd.DataFrame:
    """Run ``query`` through ``COPY (...) TO STDOUT`` and read the CSV into a DataFrame.

    Columns named in ``dtypes`` are parsed as those types (much faster than strings converted afterwards);
    every other column stays a string, and an empty field is missing.
    """
    import pandas as pd

    statement = cur.mogrify(query, params).decode() if params else query
    buffer = io.BytesIO()
    cur.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    buffer.seek(0)
    types: defaultdict[str, Any] = defaultdict(lambda: str, dtypes or {})
    return pd.read_csv(buffer, dtype=types, keep_default_na=False, na_values=[""])


def copy_frame_in(cur: Any, frame: pd.DataFrame, table: str, columns: Sequence[str]) -> int:
    """COPY ``frame[columns]`` into ``table``; missing values become NULL. Returns the row count."""
    if frame.empty:
        return 0
    buffer = io.StringIO()
    frame.loc[:, list(columns)].to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    column_list = ", ".join(columns)
    cur.copy_expert(f"COPY {table} ({column_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    return len(frame)


# PostgreSQL binary COPY: a signature, flags and a header-extension length, then rows, then -1.
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# PostgreSQL type (as format_type() spells it) -> big-endian numpy type of its binary COPY form.
_BINARY_NUMBERS: dict[str, str] = {
    "bigint": ">i8",
    "integer": ">i4",
    "smallint": ">i2",
    "double precision": ">f8",
    "real": ">f4",
}
_BINARY_TEXT = ("text", "character varying", "character")
BINARY_COPY_TYPES: tuple[str, ...] = (*_BINARY_NUMBERS, "timestamp with time zone", *_BINARY_TEXT)
_PG_EPOCH = "2000-01-01T00:00:00"


def _binary_column(values: pd.Series, pg_type: str) -> tuple[Any, Any, Any]:
    """(null mask, big-endian values, byte length per row) of one column for binary COPY."""
    import numpy as np
    import pandas as pd

    null = values.isna().to_numpy()
    base = pg_type.split("(")[0]
    if base in _BINARY_NUMBERS:
        kind = np.dtype(_BINARY_NUMBERS[base])
        if kind.kind == "i":
            data = pd.array(values, dtype="Int64").to_numpy(dtype="int64", na_value=0)
        else:
            data = values.to_numpy(dtype="float64", na_value=0.0)
        return null, data.astype(kind), np.full(len(values), kind.itemsize)
    if base == "timestamp with time zone":
        stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        micros = (stamps - np.datetime64(_PG_EPOCH, "us")).astype("int64")
        return null, np.where(null, 0, micros).astype(">i8"), np.full(len(values), 8)
    if base in _BINARY_TEXT:
        encoded = values.where(~null, "").astype(str).str.encode("utf-8")
        return null, encoded.to_numpy(), encoded.str.len().to_numpy()
    raise ValueError(f"binary COPY of type {pg_type!r} is not supported; allowed: {list(BINARY_COPY_TYPES)}")


def binary_copy_payload(frame: pd.DataFrame, types: dict[str, str]) -> bytes:
    """Encode ``frame[types]`` as a PostgreSQL binary COPY stream, without any text formatting.

    ``types`` maps column names to PostgreSQL types (BINARY_COPY_TYPES). Missing values (None, NaN, NaT)
    become NULL. Rows are grouped by their NULL pattern and text lengths, so that each group is one
    fixed-layout numpy record array; the stream therefore does not keep the frame's row order.
    """
    import numpy as np
    import pandas as pd

    names = list(types)
    encoded = {name: _binary_column(frame[name], types[name]) for name in names}
    keys = pd.DataFrame({i: np.where(encoded[n][0], -1, encoded[n][2]) for i, n in enumerate(names)})
    parts = [_PGCOPY_HEADER]
    for key, rows in keys.groupby(list(keys.columns), sort=False).indices.items():
        lengths = key if isinstance(key, tuple) else (key,)
        layout = [("fields", ">i2")]
        for i, (name, length) in enumerate(zip(names, lengths, strict=True)):
            layout.append((f"len{i}", ">i4"))
            if length >= 0:
                values = encoded[name][1]
                layout.append((f"val{i}", f"S{length}" if values.dtype == object else values.dtype.str))
        records = np.zeros(len(rows), dtype=np.dtype(layout))
        records["fields"] = len(names)
        for i, (name, length) in enumerate(zip(names, lengths, strict=True)):
            records[f"len{i}"] = length
            if length >= 0:
                records[f"val{i}"] = encoded[name][1][rows]
        parts.append(records.tobytes())
    parts.append(_PGCOPY_TRAILER)
    return b"".join(parts)


def column_types(cur: Any, table: str, columns: Sequence[str]) -> dict[str, str]:
    """The PostgreSQL types of ``columns`` of ``table`` (a temp table too), read from the catalog."""
    cur.execute(
        """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
        (table,),
    )
    found = dict(cur.fetchall())
    missing = [c for c in columns if c not in found]
    if missing:
        raise DatabaseError(f"table {table} has no columns {missing}")
    return {c: found[c] for c in columns}


def copy_binary_in(cur: Any, frame: pd.DataFrame, table: str, columns: Sequence[str]) -> int:
    """Binary COPY ``frame[columns]`` into ``table``, typed from the catalog; returns the row count."""
    if frame.empty:
        return 0
    payload = binary_copy_payload(frame, column_types(cur, table, columns))
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
    return len(frame)
