"""Affiliate feeds: feed files of any format, and what prodcat infers from their content."""
