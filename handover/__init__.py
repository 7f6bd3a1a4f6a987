"""The write-ownership handover behind `strangler own` (DESIGN.md, "Write ownership").

    procedure.py   the flip from start to end: preflight, the phases in order, undo on failure,
                   resume after a crash, `--undo` of an unfinished one
    preflight.py   which group a name means; every check before anything changes
    phases.py      hold, drain, guard, ids, reverse, flip, done; and undo
    flip.py        one flip in progress: its files, databases, state and ledger lines
    journal.py     the flip's state file (to resume) and lock (one flip of a group at a time)
    routersync.py  a running router reloads and every worker confirms the new ownership
    enforce.py     the databases refuse the non-owner's writes, from a fresh stack's start
    ids.py         id blocks so both sides' new rows never share an id (`strangler ids`)
    errors.py      HandoverError (a ControlError) and its subclasses

It imports nothing of `cli`: `cli/own.py` and `cli/ids.py` call it and print the outcome.
"""
