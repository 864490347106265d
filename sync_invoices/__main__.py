"""`python -m sync_invoices` runs the command line."""

from sync_invoices.cli import main

main()
