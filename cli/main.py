"""Entry point of the `strangler` command: one Typer group per concern, joined here.

Exit codes: 0 ok, 1 failed, 2 usage, 3 a gate or check not met.
"""

import typer

from cli.canary import app as canary_app
from cli.cdc import cdc_app, verify
from cli.demo import demo
from cli.doctor import app as doctor_app
from cli.ids import app as ids_app
from cli.ledger import app as ledger_app
from cli.own import app as own_app
from cli.rollouts import app as rollouts_app
from cli.routes import app as routes_app
from cli.shift import app as shift_app
from cli.status import app as status_app
from cli.traffic import traffic
from cli.up import app as stack_app

app = typer.Typer(
    name="strangler",
    help="Move a monolith to services one path at a time.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold DSNs and tokens
)

# Command groups register below, one line each:
# app.add_typer(routes_app, name="routes")
app.add_typer(stack_app)  # up, down, ps, logs
app.add_typer(ledger_app)  # ledger
app.add_typer(doctor_app)  # doctor
app.add_typer(routes_app, name="routes")  # routes show|validate|diff
app.add_typer(shift_app)  # shift
app.add_typer(canary_app)  # canary
app.add_typer(rollouts_app, name="rollout")  # rollout start|status|promote|abort|pause|resume
app.add_typer(status_app)  # status
app.add_typer(own_app)  # own
app.add_typer(cdc_app, name="cdc")
app.command("verify")(verify)
app.add_typer(ids_app, name="ids")  # ids show|reserve
app.command()(traffic)
app.command()(demo)


@app.callback()
def main() -> None:
    """Strangler: route, sync and check a monolith-to-services migration."""


if __name__ == "__main__":
    app()
