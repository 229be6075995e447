"""One exception type for every user-facing problem; the CLI prints it on one line."""


class NegspaceError(Exception):
    """Bad input or configuration: the message is meant for the user, without a traceback."""
