"""`python -m ipspace` runs the CLI."""

from ipspace.cli import main

main()
