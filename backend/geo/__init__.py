"""Geographic reference data: US state and nation outlines."""
