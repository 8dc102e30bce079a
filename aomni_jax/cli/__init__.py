"""Thin console entry points over library functions."""
