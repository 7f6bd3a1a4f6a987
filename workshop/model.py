"""What an exercise is, and what its check answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (a file and key, a table, a route) and what to do."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True)
class Result:
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()  # what was checked and held

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "problems": [{"where": p.where, "what": p.what} for p in self.problems],
                "notes": list(self.notes)}


Check = Callable[[Path], Result]


@dataclass(frozen=True, kw_only=True)
class Exercise:
    number: int
    slug: str
    title: str
    step: str  # which of the seven migration steps it practises
    goal: str
    task: str  # what to do, in the learner's words
    files: tuple[str, ...]  # the files the learner edits (copied from start/)
    databases: dict[str, str] = field(default_factory=dict)  # name -> SQL script under start/
    hints: tuple[str, ...] = ()  # tier 1 (a nudge) .. last (nearly the answer)
    check: str = ""  # the name of its function in workshop.checks
    folder: Path = Path()

    @property
    def start_dir(self) -> Path:
        return self.folder / "start"

    @property
    def solution_dir(self) -> Path:
        return self.folder / "solution"
