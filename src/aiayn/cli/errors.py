"""The user error every sub-command raises; torch-free, so `import aiayn.cli` loads no torch (see main())."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback (exit code 1)."""
