"""sarvit's exceptions: every library door check raises one, and the command line reports them as one line.

``SarvitError`` is a ``ValueError`` (a bad value); ``SarvitTypeError`` is also a ``TypeError`` (a value of the
wrong type), so callers may catch the built-in class they expect or ``SarvitError`` for both.
"""

__all__ = ["SarvitError", "SarvitTypeError"]


class SarvitError(ValueError):
    """A user-facing failure: the message names the argument, what was expected and what was found."""


class SarvitTypeError(SarvitError, TypeError):
    """An argument of the wrong type (a list where a tensor was expected, an int mask where a bool one was)."""
