"""Error classes shared by every floor of onet.

The CLI maps them to exit codes: `UsageError` and `ConfigError` exit 2 (the
user asked for something invalid), anything else exits 1 (a runtime failure).
They live here, below the stages, so a stage can raise them without
importing the CLI.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Wrong command-line usage (exit code 2); the message names the option or file."""


class ConfigError(ValueError):
    """A config file or override is invalid (exit code 2); the message names the file or key."""


class Terminated(BaseException):
    """SIGTERM reached the CLI (`kill`, a job scheduler), raised in the main thread (exit code 143).

    Not an Exception, like KeyboardInterrupt: per-item handlers let it through, and worker pools
    stop their workers on the way out (utils.parallel.stopping) instead of dying without them
    (orphaned workers waited on their task queue for good).
    """
