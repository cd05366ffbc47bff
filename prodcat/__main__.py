"""``python -m prodcat`` is the ``prodcat`` command."""

from prodcat.cli import main

raise SystemExit(main())
