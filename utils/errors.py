"""The project's own error type: what a user can fix, said in one line.

Every check of user input (a recipe field, a flag, a path, a data folder, a checkpoint) raises a ``CourseError``;
``python -m utils`` prints those as one ``error:`` line with exit code 2. Anything else that goes wrong (a shape
bug inside torch, a ValueError from a library) is not the user's input and keeps its traceback.
"""


class CourseError(Exception):
    """Bad input, or a state the user can fix; the message says what to do."""


class UsageError(CourseError, ValueError):
    """A value given to a command, a recipe or a function that cannot work (a ValueError, as callers expect)."""
