"""A root on disk or in a bucket: storage, paths, the lock and its fence, Delta I/O, the
logs, the history policy."""
