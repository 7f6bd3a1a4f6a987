"""The local stack engine behind `strangler up / down / ps / logs` and the demo.

    model.py       the stack as data: every process, its argv, port, env and readiness path
    supervisor.py  runs a model's processes on loopback: pid files, logs, ordered stop
    realstack.py   the throwaway PostgreSQL (and Kafka) of `up --real`
    localshop.py   the legacy shop alone as a subprocess (tests, benchmarks)
    state.py       the `.strangler/` folder: run files, logs, admin token, identity secret
    errors.py      StackError and its subclasses

It imports nothing of `cli`: the commands in `cli/up.py` call it and print its errors.
"""
