"""Published layers: versioned COG folders, the catalog in PostGIS, flagged clusters and jobs."""
