"""`verify`: are the books equal? QuickBooks read back into a mirror, compared with the MIS, repaired.

    read    QuickBooks -> the mirror (full, or change data capture)
    drift   the differences, each of one kind, with reason and fix
    repair  what the MIS is authoritative for, through the push
    run     one verify, recorded
"""
