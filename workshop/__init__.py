"""The workshop: exercises a room can do on one laptop each, and break-its to diagnose.

    exercises.py   the exercises, loaded from data/NN-slug/exercise.yaml (+ start/, solution/)
    checks.py      one check per exercise: files parsed by the project's own loaders,
                   databases queried, the router's own matching and diffing asked
    workspace.py   .strangler/workshop/N/: the learner's copies, databases, progress; reset
    breakits.py    `strangler break NAME`: faults injected into the running stack, a check
                   that says whether the learner fixed it, hints, undo
    model.py       Exercise, Problem, Result (what a check returns)

Everything here is driven by `cli/workshop.py` and `cli/breakit.py`, thin commands.
"""

from workshop.errors import NotFound, WorkshopError
from workshop.model import Exercise, Problem, Result

__all__ = ["Exercise", "NotFound", "Problem", "Result", "WorkshopError"]
