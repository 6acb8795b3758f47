"""tunelab: the command line and the driver that assembles a Ray Tune Tuner.

Its subpackages `tunelab.trainables`, `tunelab.search_spaces` and `tunelab.analysis` live in the
repository's top-level folders of those names; an installed tunelab has them inside this package
(pyproject's package-dir). A checkout on sys.path without an install (`ray job submit
--working-dir .` to nodes where tunelab is not installed) finds them beside this folder.
"""
import os as _os

__version__ = "0.2.0"

_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "trainables")) and \
        _os.path.isfile(_os.path.join(_checkout, "trainables", "__init__.py")):
    __path__.append(_checkout)
