"""The factory a TrainingPipeline names (``spec.model.factory: churn_features.model:make``).

``make()`` returns an unfitted scikit-learn Pipeline that takes a DataFrame of the Dataset's
feature columns (manifests/samples/dataset.yaml): the team's own transformer adds two ratios,
then standard scikit-learn preprocessing and a classifier. Loopwright fits it, saves it with
skops and loads it only with its built-in trusted types plus the one this module adds
(``churn_features.model.ChurnRatios``, declared in ``spec.model.trustedTypes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["plan"]
RATIOS = ["charges_per_tenure", "calls_per_tenure"]


class ChurnRatios(TransformerMixin, BaseEstimator):
    """Adds charges and support calls per month of tenure (+1), keeping the other columns.

    It records ``feature_names_in_`` when fitted, as scikit-learn's own transformers do: the
    predictor then hands the model a DataFrame with the schema's column names.
    """

    def __init__(self, offset: float = 1.0) -> None:
        self.offset = offset

    def fit(self, x: pd.DataFrame, y: Any = None) -> ChurnRatios:
        self.feature_names_in_ = np.asarray(x.columns, dtype=object)
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        out = x.copy()
        months = out["tenure_months"].astype(float) + self.offset
        out["charges_per_tenure"] = out["monthly_charges"].astype(float) / months
        out["calls_per_tenure"] = out["support_calls"].astype(float) / months
        return out


def make() -> Pipeline:
    preprocess = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
         NUMERIC + RATIOS),
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
    ])
    return Pipeline([("ratios", ChurnRatios()), ("preprocess", preprocess),
                     ("clf", LogisticRegression(max_iter=500))])
