"""Per-method search spaces as data (ranges with units and a one-line reason each), and YAML overrides."""
