"""The package's exception hierarchy: every error names the bad value and what is allowed."""


class SegmentationError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(SegmentationError):
    """A setting is missing or has a value outside what is allowed."""


class DataError(SegmentationError):
    """Input data cannot be used: wrong layout, missing columns, or too many bad rows."""


class RejectThresholdExceeded(DataError):
    """The share of quarantined rows in one batch is above the configured limit."""


class ModelError(SegmentationError):
    """No usable model: none registered, a corrupt artifact, or a schema mismatch."""


class DatabaseError(SegmentationError):
    """The customer database cannot be reached or is not in the expected state."""


class NotFoundError(SegmentationError):
    """A requested customer or record does not exist or is not in the state asked for (e.g. not scored)."""
