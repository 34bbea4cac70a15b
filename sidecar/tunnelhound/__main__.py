"""Allow ``python -m tunnelhound``."""

from tunnelhound.cli import main

raise SystemExit(main())
