"""Entry point of the `strangler` command: one Typer group per concern, joined here.

Exit codes: 0 ok, 1 failed, 2 usage, 3 a gate or check not met.
"""

import typer

from cli.cdc import cdc_app, verify
from cli.demo import demo
from cli.traffic import traffic

app = typer.Typer(
    name="strangler",
    help="Move a monolith to services one path at a time.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold DSNs and tokens
)

# Command groups register below, one line each:
# app.add_typer(routes_app, name="routes")
app.command()(traffic)
app.command()(demo)
app.add_typer(cdc_app, name="cdc")
app.command("verify")(verify)


@app.callback()
def main() -> None:
    """Strangler: route, sync and check a monolith-to-services migration."""


if __name__ == "__main__":
    app()
