"""The push: invoices from the MIS into QuickBooks, exactly once.

    run       one push command from start to end (lock, heartbeat, signals, the record of the run)
    pipeline  claim -> plan -> customers -> look up -> decide -> queue
    lanes     queued operations -> batch and single requests, at QuickBooks' pace
    writes    one request: record -> send -> apply
    settle    unanswered writes and the rows of dead runs
    customers customers before invoices
    ledger    outcomes -> status changes and audit records
    tally     the last outcome of each invoice, for the summary and the progress bar
    stop      a graceful stop, asked by a signal or by `serve`
"""
