"""prodcat: streams."""
