"""The `strangler` command: thin Typer commands over the engines (stack/, loadgen/, ...).

Strangler needs a POSIX system (file locks with fcntl, process groups, /proc): on native
Windows the command says to use WSL instead of failing on an import deep inside.
"""

import sys

WINDOWS = (
    "Strangler runs on Linux and macOS, not on native Windows (it locks files with fcntl and "
    "stops process groups). On Windows use WSL 2: `wsl --install -d Ubuntu`, then clone and "
    "run `make demo` inside the Ubuntu shell (README, 'The two commands')."
)

if sys.platform == "win32":
    raise SystemExit(WINDOWS)
