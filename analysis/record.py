"""Moved to the bottom layer in 0.4: `tunelab.core.record` (the record), `tunelab.core.storage`
(locations) and `tunelab.core.redaction` (secrets in URIs). Kept so older imports work."""
from tunelab.core.record import *  # noqa: F401,F403
from tunelab.core.record import (FINAL_STATUSES, FORMAT, MODES, NESTED, OPTIONAL, SCHEMA, TUNELAB_FILE,  # noqa: F401
                                 ExperimentRecord, check_not_in_an_experiment, check_record, enclosing_experiments,
                                 is_experiment, read_record, write_record)
from tunelab.core.redaction import REDACTED, redact, redact_all, split_password  # noqa: F401
from tunelab.core.storage import (experiment_identity, is_uri, join_uri, local_path, read_text,  # noqa: F401
                                  remote_filesystem)
