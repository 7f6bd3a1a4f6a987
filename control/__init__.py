"""The operator's side of a running stack: what the commands, the walkthrough and the
workshop do to a router and its streams, with no Typer in it.

    routerapi.py      a client of the router's admin API; the status document read as snapshots
    routercontrol.py  a rollout loop's controls over that API and the dashboard's files
    shift.py          one backend's weight on a route, live or in the routes file
    readgate.py       the read cut-over gate: a raise toward a copy must find it current
    streamcheck.py    is a stream running, within its lag budget, equal at its last verify
    verify.py         `strangler verify` as an engine: compare, keep the result, repair
    status.py         the status document: the router's overview plus the databases' checks
    ledger.py         where the ledger is, reading and appending it, who acts
    errors.py         ControlError and its subclasses; USER_ERRORS, every root printed as is

It imports nothing of `cli`, `handover`, `walkthrough` or `workshop`: they call it.
"""
