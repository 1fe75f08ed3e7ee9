"""netfabric.agent."""
