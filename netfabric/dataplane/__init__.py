"""netfabric.dataplane."""
