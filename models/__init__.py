"""Streaming datasets over the store and the SOZ model zoo."""
