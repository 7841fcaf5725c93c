"""What arrives: split (landing -> archive) and pulls from an HTTP API."""
