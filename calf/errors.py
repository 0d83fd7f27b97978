"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class CalfError(Exception):
    """A user-facing error: bad input, bad config, missing file.

    The message is one line and names the offending file, key or value.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
