"""`strangler export nginx|haproxy|gateway-api|istio [--routes FILE] [--out DIR] [--json]
[--gateway [NS/]NAME] [--channel standard|experimental]`:
routes.yaml as that data plane's own configuration (dataplane/ does the work); nginx and
HAProxy keep the router's cohorts, the Kubernetes targets cannot (their limits say so).

Without --out the configuration goes to stdout; what the target cannot express goes to
stderr (and into --json's `limits`), so nobody believes a feature was carried that was not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import CLIError
from cli.output import err, guarded, print_json

app = typer.Typer()


@app.command("export")
@guarded
def export(
    target: Annotated[str, typer.Argument(help="The data plane: nginx, haproxy, gateway-api or istio.")],
    routes: Annotated[Path, typer.Option("--routes", help="The routes file.")] = Path("routes.yaml"),
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the files into this folder "
                                                 "(created) instead of printing them.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document: files, limits, source.")] = False,
    gateway_name: Annotated[str, typer.Option(
        "--gateway", help="gateway-api/istio: the Gateway the routes attach to, NAME or NAMESPACE/NAME.",
    )] = "strangler",
    channel: Annotated[str, typer.Option(
        "--channel", help="gateway-api: the Gateway API CRDs' channel in your cluster; experimental "
        "adds rules[].retry on replayable methods.")] = "standard",
) -> None:
    """Render routes.yaml for nginx, HAProxy (same users on the same backends), Gateway API or Istio."""
    from dataplane import TARGETS, ExportError, gateway, haproxy, istio, model, nginx

    if target not in TARGETS:
        err.print(f"error: unknown data plane {target!r}; targets: {', '.join(TARGETS)} "
                  "(e.g. `strangler export nginx --out deploy/nginx`)", markup=False, highlight=False)
        raise typer.Exit(2)
    for name, given, default, targets in (("gateway", gateway_name, "strangler", ("gateway-api", "istio")),
                                          ("channel", channel, "standard", ("gateway-api",))):
        if given != default and target not in targets:
            err.print(f"error: --{name} does not apply to {target} (only to {', '.join(targets)}) — fix: "
                      f"drop --{name}", markup=False, highlight=False)
            raise typer.Exit(2)
    if not routes.is_file():
        raise CLIError(f"no routes file at {routes} — fix: run this where routes.yaml is, or pass "
                       "--routes PATH")
    try:
        plan = model.load_plan(routes)
        if target == "nginx":
            files = {"strangler.conf": nginx.render(plan)}
            limits = nginx.limits(plan)
            use = "include strangler.conf inside nginx.conf's http { } block"
        elif target == "gateway-api":
            files = {"httproute.yaml": gateway.render(plan, gateway=gateway_name, channel=channel)}
            limits = gateway.limits(plan, gateway=gateway_name, channel=channel)
            use = (f"kubectl apply -f httproute.yaml (needs the Gateway {gateway_name!r}, the {channel} "
                   "channel's CRDs and a Service per upstream)")
        elif target == "istio":
            files = {"istio.yaml": istio.render(plan, gateway=gateway_name)}
            limits = istio.limits(plan, gateway=gateway_name)
            use = f"kubectl apply -f istio.yaml (needs the Istio Gateway {gateway_name!r} and a Service per upstream)"
        else:
            lua = str((out_dir / "strangler.lua").absolute()) if out_dir else "/etc/haproxy/strangler.lua"
            files = {"haproxy.cfg": haproxy.render(plan, lua_path=lua), "strangler.lua": haproxy.lua_source(),
                     haproxy.CUTS_FILE: haproxy.cuts_map(plan)}
            limits = haproxy.limits(plan)
            use = f"haproxy -f haproxy.cfg (it loads {lua} and {haproxy.CUTS_FILE} beside it: the weights)"
    except ExportError as exc:
        raise CLIError(str(exc)) from None
    written: list[str] = []
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (out_dir / name).write_text(text)
                written.append(str(out_dir / name))
        except OSError as exc:
            raise CLIError(f"cannot write into {out_dir}: {exc.strerror}; choose another --out folder") from None
    if as_json:
        print_json({"target": target, "source": plan.source, "sha256": plan.sha256,
                    "ledger": plan.ledger_position, "written": written, "limits": limits,
                    "files": files if out_dir is None else {}})
        return
    if out_dir is None:
        for name, text in files.items():
            if len(files) > 1:
                typer.echo(f"# ---- {name} ----")
            typer.echo(text)
    for line in written:
        err.print(f"wrote {line}", markup=False, highlight=False)
    err.print(f"use: {use}", markup=False, highlight=False)
    for line in limits:
        err.print(f"not exported: {line}", markup=False, highlight=False)
