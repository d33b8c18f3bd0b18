"""Synthetic churn records for the demo: the same columns as manifests/samples/dataset.yaml.

Only the standard library and numpy: the demo imports it to write the training data, and the
traffic Job (tests/demo/traffic.py, run in a predictor image) imports it to make requests.
``shift`` moves the population (newer customers on pricier plans who call support more); the
rule that decides who churns stays the same, so the old model is not useless, only out of date.
"""

from __future__ import annotations

import io

import numpy as np

PLANS = ("basic", "standard", "premium")
LABEL = "churned"
COLUMNS = ("tenure_months", "monthly_charges", "support_calls", "plan")


def rows(n: int, *, shift: float = 0.0, seed: int = 0) -> tuple[list[dict[str, object]], list[str]]:
    """``n`` records and their labels; ``shift`` in [0, 1] is how far the population has moved."""
    rng = np.random.default_rng(seed)
    tenure = np.clip(rng.gamma(2.0, 18.0 * (1.0 - 0.7 * shift), n), 0, 240).round()
    charges = np.clip(rng.normal(60.0 + 40.0 * shift, 18.0, n), 5.0, None).round(2)
    calls = np.minimum(rng.poisson(1.2 + 3.0 * shift, n), 50)
    weights = np.array([0.5, 0.35, 0.15]) * (1 - shift) + np.array([0.15, 0.3, 0.55]) * shift
    plan = rng.choice(len(PLANS), size=n, p=weights / weights.sum())
    score = (-0.05 * tenure + 0.03 * (charges - 70.0) + 0.45 * calls
             + np.array([0.4, 0.0, -0.6])[plan] - 0.3 + rng.logistic(0.0, 0.6, n))
    churned = np.where(score > 0, "yes", "no")
    records = [{"tenure_months": float(t), "monthly_charges": float(c), "support_calls": int(k),
                "plan": PLANS[p]} for t, c, k, p in zip(tenure, charges, calls, plan, strict=True)]
    return records, [str(label) for label in churned]


def csv_bytes(records: list[dict[str, object]], labels: list[str]) -> bytes:
    out = io.StringIO()
    out.write(",".join((*COLUMNS, LABEL)) + "\n")
    for record, label in zip(records, labels, strict=True):
        out.write(",".join(str(record[c]) for c in COLUMNS) + f",{label}\n")
    return out.getvalue().encode()
