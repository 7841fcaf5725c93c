"""The erasure stage: requests applied in order; raw files, reports and exports rewritten
field by field."""
