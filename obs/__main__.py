"""``python -m obs``: the `obs` command."""

from obs.cli import main

main()
