"""The bottom layer: contracts every other package may import (trial statuses, ...), with no
dependency on torch, Ray, pandas or any other tunelab package."""
