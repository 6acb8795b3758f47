"""tunelab: the command line and the driver that assembles a Ray Tune Tuner."""

__version__ = "0.1.0"
