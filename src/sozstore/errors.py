"""The one base class of the errors a user can fix.

Every layer raises its own subclass (an invalid site config, a refused query, a misspelled
hyper-parameter...). The command line prints any of them as one line, ``error: ...``, and
exits with code 2; anything else is a bug and is reported as one.
"""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user asked for or gave (a file, an option, a query)."""
