"""Customer ids typed by people (a page's URL or form, the API, the command line), checked in one place."""

from __future__ import annotations

import re

from segmentation.errors import DataError

MAX_CUSTOMER_ID = 2**63 - 1  # PostgreSQL bigint
_DIGITS = re.compile(r"[0-9]{1,19}")
CUSTOMER_ID_RULE = f"the customer id must be a positive whole number (1 to {MAX_CUSTOMER_ID})"


class InvalidCustomerId(DataError, ValueError):
    """A text that is not a customer id; the message names the rule and never the text (it may be hostile)."""


def parse_customer_id(text: str | None) -> int:
    """The customer id written in ``text``: 1 to 19 ASCII digits, from 1 to 2^63-1; InvalidCustomerId otherwise."""
    digits = text or ""
    if not _DIGITS.fullmatch(digits) or not 0 < int(digits) <= MAX_CUSTOMER_ID:
        raise InvalidCustomerId(CUSTOMER_ID_RULE)
    return int(digits)
