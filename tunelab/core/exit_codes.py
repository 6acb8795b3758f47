"""The exit codes of every tunelab command (the command line's contract, also read by compare's
parallel driver to tell a refused search from a failed or interrupted one)."""

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run started and failed: a trial errored, a search ended with none finished
EXIT_BAD_INPUT = 2  # refused before any work started, in one line naming the bad value
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM; resumable
