"""The one exception type a scholar may see: its message names the bad input and the fix."""

__all__ = ["SpritesError"]


class SpritesError(Exception):
    """A user-facing error (bad config, bad input, missing stage); the CLI prints it without a
    traceback. The message says what is wrong and what to do about it."""
