"""The only place tunelab touches a third-party library's private attributes or modules: one module
per library. A version bump that changes what these rely on fails their pinned tests
(tests/tunelab/test_compat.py) by name, not somewhere in a search."""
