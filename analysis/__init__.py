"""Experiment loading, comparison tables, plots and reports, best config, seeded reproduction."""
