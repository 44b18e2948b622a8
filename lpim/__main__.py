"""`python -m lpim`: the same as the `lpim` command."""

from lpim.cli import main

raise SystemExit(main())
