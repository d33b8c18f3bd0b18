"""What the operator reads from outside the API server: predictors' metrics, webhooks."""
