"""Feature sets computed from the store's signals."""
