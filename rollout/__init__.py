"""Rollouts: a candidate backend's weight stepped up under a gate, promoted or rolled back.

    spec.py        what a rollout is (Argo's steps: setWeight, pause, analysis, approval),
                   from a YAML file or the command line's flags, validated whole
    gate.py        windows of the router's cumulative counters, and the verdict on one
    controller.py  the persisted rollout and the controller that advances it (a detached
                   process started by `strangler rollout start`; survives its terminal)
    webhook.py     the pre/post analysis hooks (HTTP POST, 2xx passes)
    canary.py      the foreground loop of `strangler canary` and the demo (`run_canary`)
"""
