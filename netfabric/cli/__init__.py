"""The `netfabric` command: parses arguments, calls the API, prints tables or JSON."""
