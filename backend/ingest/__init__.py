"""Ingestion of mineral-site records (MinMod JSON, USGS MRDS CSV, GeoJSON) into PostGIS."""
