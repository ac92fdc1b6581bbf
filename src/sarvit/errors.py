"""The one exception type the command line reports as a message instead of a traceback."""


class SarvitError(Exception):
    """A user-facing failure: the message says what was expected and what was found."""
