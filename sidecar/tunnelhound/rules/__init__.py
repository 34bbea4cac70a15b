"""Sigma rules: checking and converting them (this package also holds the streaming engine)."""
