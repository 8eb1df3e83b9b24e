"""Tests of the CONUS data cube (backend/cube)."""
