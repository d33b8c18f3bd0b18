"""A team's own churn feature engineering, trained, verified and served by Loopwright."""
