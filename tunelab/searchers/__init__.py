"""The searchers behind `tunelab tune --search NAME`, one module each (tunelab.searcher_plugins has
the protocol they follow and the registry that names them)."""
