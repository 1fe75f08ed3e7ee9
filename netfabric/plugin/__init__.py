"""netfabric.plugin."""
