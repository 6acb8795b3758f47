"""Where tunelab's uses of a third-party library's private attributes or modules go: one module per
library, each use with the reason no public API serves. (Older uses still sit in tunelab.searcher,
tunelab.ray_state, tunelab.cluster and tunelab.tracking_wandb.)"""
