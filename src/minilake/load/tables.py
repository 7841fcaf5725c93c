"""Split into minilake.lake.delta (Delta I/O), minilake.lake.logs (the logs) and
minilake.load.datafiles (the SCD2 tables' files); these names stay only until nothing imports
them (issue 37)."""

from minilake.lake import storage  # noqa: F401
from minilake.lake.delta import (  # noqa: F401
    CHECKPOINT_EVERY,
    COMMIT_KEY,
    KEEP_LOG,
    Opened,
    app_id,
    created,
    dataset,
    delta,
    exists,
    fenced,
    read,
    refused,
    remove_orphans,
    versions,
    write,
)
from minilake.lake.logs import (  # noqa: F401
    LOG_SCHEMA,
    IngestLog,
    append_erasure_log,
    append_pull_log,
    read_erasure_log,
    read_log,
    read_pull_log,
)
from minilake.load.datafiles import (  # noqa: F401
    applied_commits,
    commit,
    current_files,
    current_versions,
    replace_table,
    row_counts,
    table_schema,
    write_changes,
)
