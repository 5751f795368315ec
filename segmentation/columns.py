"""Column names and allowed values shared by every step."""

from __future__ import annotations

CUSTOMER_ID = "customer_id"
SEGMENT = "segment"

NUMERIC_COLUMNS: tuple[str, ...] = ("age", "work_experience", "family_size")
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "gender",
    "ever_married",
    "graduated",
    "profession",
    "spending_score",
    "var_1",
)
# Attribute columns of a customer, in the order of the Kaggle layout.
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "gender",
    "ever_married",
    "age",
    "graduated",
    "profession",
    "work_experience",
    "spending_score",
    "family_size",
    "var_1",
)

SEGMENTS: tuple[str, ...] = ("A", "B", "C", "D")
PROBABILITY_COLUMNS: tuple[str, ...] = ("p_a", "p_b", "p_c", "p_d")

ALLOWED_CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "ever_married": ("No", "Yes"),
    "graduated": ("No", "Yes"),
    "profession": (
        "Artist",
        "Doctor",
        "Engineer",
        "Entertainment",
        "Executive",
        "Healthcare",
        "Homemaker",
        "Lawyer",
        "Marketing",
    ),
    "spending_score": ("Low", "Average", "High"),
    "var_1": ("Cat_1", "Cat_2", "Cat_3", "Cat_4", "Cat_5", "Cat_6", "Cat_7"),
}

# Kaggle CSV header -> our column name.
KAGGLE_COLUMNS: dict[str, str] = {
    "ID": CUSTOMER_ID,
    "Gender": "gender",
    "Ever_Married": "ever_married",
    "Age": "age",
    "Graduated": "graduated",
    "Profession": "profession",
    "Work_Experience": "work_experience",
    "Spending_Score": "spending_score",
    "Family_Size": "family_size",
    "Var_1": "var_1",
    "Segmentation": SEGMENT,
}

# Deterministic derived columns written to customer_features.
DERIVED_COLUMNS: tuple[str, ...] = ("spending_rank", "working_years_share")

# Columns the model pipeline consumes, by name (never by position).
MODEL_NUMERIC_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *DERIVED_COLUMNS)
MODEL_CATEGORICAL_COLUMNS: tuple[str, ...] = CATEGORICAL_COLUMNS
MODEL_INPUT_COLUMNS: tuple[str, ...] = (*MODEL_NUMERIC_COLUMNS, *MODEL_CATEGORICAL_COLUMNS)

# Candidate model families (the seed's six, HistGradientBoosting and a soft vote of it with a random forest);
# built in segmentation.training.
CANDIDATE_NAMES: tuple[str, ...] = (
    "logistic_regression",
    "knn",
    "decision_tree",
    "naive_bayes",
    "random_forest",
    "gradient_boosting",
    "hist_gradient_boosting",
    "hgb_rf_vote",
)

# The bucket of a missing value in reference and segment distributions.
MISSING = "(missing)"
