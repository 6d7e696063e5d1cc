"""Errors whose message says everything the user needs: the `opgrpo` entrypoint prints them without a traceback.

A lower layer (the sweep report, compare, ...) raises a :class:`RefusedError` subclass when it refuses its input for
a reason the message explains (runs scored by different estimators, say); opgrpo.app.cli records it in status.json
(failed), logs the message alone and exits 1. Code that calls the library from Python gets an ordinary exception.
"""
from __future__ import annotations


class RefusedError(Exception):
    """The input is refused for the reason in the message; the command line shows that message, not a traceback."""
