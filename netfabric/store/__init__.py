"""netfabric.store."""
