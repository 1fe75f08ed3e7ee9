"""netfabric.dns."""
