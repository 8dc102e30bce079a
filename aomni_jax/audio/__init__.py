"""Signal processing and audio/video I/O."""
