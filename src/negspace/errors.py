"""One exception type for every user-facing problem; the CLI prints it on one line."""


class NegspaceError(Exception):
    """Bad input or configuration: the message is meant for the user, without a traceback."""


class TrainingInterrupted(NegspaceError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved.

    Args:
        message: where the checkpoint is and how to resume.
        signum: the signal received; the CLI exits with 128 + signum.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
