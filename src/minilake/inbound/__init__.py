"""What arrives: readers of raw files, pulls from an HTTP API, split (landing -> archive)."""
