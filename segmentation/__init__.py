"""Customer segmentation batch scoring: cleaning, features, training and scoring on PostgreSQL."""

__version__ = "0.1.0"
