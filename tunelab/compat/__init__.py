"""The one door to third-party internals: every private attribute or module of Ray (`compat.ray`,
including its W&B and MLflow integrations) and of Optuna (`compat.optuna`) that tunelab uses is
spelled in these modules and nowhere else, each with the reason no public API serves.
tests/tunelab/test_compat.py counts the uses elsewhere (none) and pins each behaviour relied on,
so a version bump that changes one fails there, by name."""
