"""prodcat: serving."""
