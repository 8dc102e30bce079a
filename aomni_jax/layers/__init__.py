"""Building blocks with no model-specific logic."""
