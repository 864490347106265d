"""`python -m sync_invoices` runs the command line."""

from sync_invoices.entry import main

main()
