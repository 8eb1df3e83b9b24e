"""Database access: the local PostGIS cluster, the engine and the table definitions."""
