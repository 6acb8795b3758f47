"""One module per tracker (`--mlflow`, `--wandb`), each defining TRACKER; see tunelab.tracker_plugins."""
