"""Tests of inference, layers, clusters, tiles and the REST and admin API (backend/inference, backend/layers)."""
