"""The workshop's errors.

    WorkshopError       anything the learner can fix (a message that says how): exit 1
    └── NotFound        no such exercise or break-it (a usage error): exit 2
"""


class WorkshopError(Exception):
    exit_code = 1


class NotFound(WorkshopError):
    exit_code = 2
