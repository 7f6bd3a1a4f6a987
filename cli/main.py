"""Entry point of the `strangler` command: one Typer group per concern, joined here.

Exit codes: 0 ok, 1 failed, 2 usage, 3 a gate or check not met.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Annotated

import typer

from cli.breakit import app as break_app
from cli.canary import app as canary_app
from cli.cdc import cdc_app, verify
from cli.demo import demo
from cli.doctor import app as doctor_app
from cli.export import app as export_app
from cli.ids import app as ids_app
from cli.ledger import app as ledger_app
from cli.map import app as map_app
from cli.own import app as own_app
from cli.rollouts import app as rollouts_app
from cli.routes import app as routes_app
from cli.shift import app as shift_app
from cli.status import app as status_app
from cli.traffic import traffic
from cli.up import app as stack_app
from cli.walkthrough import walkthrough
from cli.workshop import app as workshop_app
from cli.workshop import reset_app

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
app.add_typer(export_app)  # export nginx|haproxy|gateway-api|istio
app.add_typer(canary_app)  # canary
app.add_typer(rollouts_app, name="rollout")  # rollout start|status|promote|abort|pause|resume
app.add_typer(status_app)  # status
app.add_typer(map_app)  # map
app.add_typer(own_app)  # own
app.add_typer(cdc_app, name="cdc")
app.command("verify")(verify)
app.add_typer(ids_app, name="ids")  # ids show|reserve
app.command()(traffic)
app.command()(demo)  # an alias of walkthrough --auto
app.command()(walkthrough)
app.add_typer(workshop_app, name="workshop")  # workshop list|start|check|hint|solution|reset
app.add_typer(break_app, name="break")  # break list|NAME|check|hint|undo
app.add_typer(reset_app)  # reset (the whole workshop workspace)


def _print_version(asked: bool) -> None:
    if not asked:
        return
    try:
        typer.echo(f"strangler {installed_version('strangler')}")
    except PackageNotFoundError:
        typer.echo("strangler (not installed: run `pip install -e .` in the checkout)")
    raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the installed version and exit.")] = False,
) -> None:
    """Strangler: route, sync and check a monolith-to-services migration."""


if __name__ == "__main__":
    app()
