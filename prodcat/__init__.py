"""prodcat: prodcat."""
