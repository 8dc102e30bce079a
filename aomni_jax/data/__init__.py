"""Datasets: sources, synthesis, records, loading and feature precompute (see README.md)."""
