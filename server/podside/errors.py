"""Errors a user can cause: each carries one line that says what happened and what to do."""


class PodsideError(Exception):
    """An expected failure: the CLI prints its message on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
