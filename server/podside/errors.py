"""Errors a user can cause: each carries one line that says what happened and what to do."""


class PodsideError(Exception):
    """An expected failure: the CLI prints its message on one line and exits with `exit_code`.
    `cause` names what refused, where a caller (doctor) words its advice by it: one of the
    `podside.kube.admission` causes, or empty."""

    def __init__(self, message: str, exit_code: int = 1, *, cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.cause = cause

    def __str__(self) -> str:
        return self.message
