"""``prodcat ui user add NAME``: annotator accounts, without loading the UI's heavy parts."""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from prodcat.core.settings import Settings
from prodcat.serving.web.auth import Users
from prodcat.serving.web.exceptions import AuthError


def add_user(
    settings: Settings,
    name: str,
    *,
    password_stdin: bool = False,
    stdin: TextIO | None = None,
) -> str:
    """Create or replace an annotator account; the password comes from stdin or a prompt."""
    if password_stdin:
        password = (stdin or sys.stdin).readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise AuthError("the passwords differ")
    created = Users(settings.ui.users_file).add(name, password)
    verb = "added" if created else "updated"
    return f"{verb} annotator {name} in {settings.ui.users_file}"
