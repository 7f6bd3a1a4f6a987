"""From facts to a map: contexts, coupling, shared writes, cross-context transactions, tangles.

Pure functions over what the probe reported (registry facts, request records) and what the
source says (contextmap/static.py); no Django here. A statement's writer is the context of
the app whose code issued it; when no app frame issued it (Django's own session save), the
view's app; failing that, the table's owner.

Coupling between two contexts sums, for each direction:
  1 × import statements · 3 × foreign keys · 3 × signal receivers across them ·
  5 × code sites writing the other's tables · 4 × transactions writing both ·
  2 × code sites running one statement over both's tables (a join).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contextmap.static import App, imports_of, resolve_app, resolve_project_module, signal_sends

WEIGHTS = {"imports": 1.0, "foreign_keys": 3.0, "signals": 3.0, "foreign_writes": 5.0,
           "transactions": 4.0, "joins": 2.0}


class Grouping:
    """Which context each app belongs to (declared, else one context per app)."""

    def __init__(self, apps: list[dict[str, Any]], declared: dict[str, list[str]] | None) -> None:
        self.apps = {a["label"]: a for a in apps}
        self.context_of: dict[str, str] = {}
        for name, labels in (declared or {}).items():
            for label in labels:
                self.context_of[label] = name
        for label in self.apps:
            self.context_of.setdefault(label, label)
        self.table_owner = {t: a["label"] for a in apps for t in a["tables"]}

    def ctx(self, app: str | None) -> str | None:
        return self.context_of.get(app) if app else None

    def table_ctx(self, table: str) -> str | None:
        return self.ctx(self.table_owner.get(table))

    def contexts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for label, app in self.apps.items():
            c = out.setdefault(self.context_of[label], {"apps": [], "tables": [], "external": True})
            c["apps"].append(label)
            c["tables"].extend(app["tables"])
            c["external"] = c["external"] and not app["project"]
        for c in out.values():
            c["apps"].sort()
            c["tables"] = sorted(set(c["tables"]))  # a proxy model shares its concrete model's table
        # a library with no tables (rest_framework, staticfiles) is no context of anything
        return {n: c for n, c in sorted(out.items()) if c["tables"] or not c["external"]}


def _project_apps(static: dict[str, Any]) -> list[App]:
    return [App(a["label"], a["name"], Path(a["path"])) for a in static["apps"] if a["project"]]


def analyse_imports(static: dict[str, Any], g: Grouping) -> dict[str, Any]:
    root = Path(static["root"])
    ours = _project_apps(static)
    every = [App(a["label"], a["name"], Path(a["path"])) for a in static["apps"]]
    ours_labels = {a.label for a in ours}
    tops = {a.name.split(".")[0] for a in ours}
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    shared: dict[str, dict[str, Any]] = {}
    for app in ours:
        for site in imports_of(app, root):
            to = resolve_app(site.module, every)
            if to is None:
                module = resolve_project_module(site.module, root, tops)
                if module is not None:
                    entry = shared.setdefault(module, {"module": module, "importers": Counter(),
                                                       "where": site.where})
                    entry["importers"][app.label] += 1
                continue
            if to == app.label or to not in ours_labels:
                continue  # within the app, or onto Django or a library
            e = edges.setdefault((app.label, to), {"from": app.label, "to": to, "count": 0,
                                                   "local": 0, "where": site.where, "local_where": None})
            e["count"] += 1
            if site.local:
                e["local"] += 1
                e["local_where"] = e["local_where"] or site.where
    imports = sorted(edges.values(), key=lambda e: (-e["count"], e["from"], e["to"]))
    cycles = []
    for (a, b), e in sorted(edges.items()):
        back = edges.get((b, a))
        if back is not None and a < b:
            papered = e if e["local"] else back if back["local"] else None
            cycles.append({"apps": [a, b], "where": (papered or e)["local_where"] or e["where"],
                           "hidden_by_local_import": papered is not None})
    shared_modules = [{"module": m["module"], "importers": sorted(m["importers"]),
                       "count": sum(m["importers"].values()), "first_import": m["where"],
                       "where": _module_file(root, m["module"])}
                      for m in shared.values() if len(m["importers"]) >= 2]
    shared_modules.sort(key=lambda m: (-len(m["importers"]), m["module"]))
    return {"imports": imports, "import_cycles": cycles, "shared_modules": shared_modules}


def _module_file(root: Path, module: str) -> str:
    path = root.joinpath(*module.split("."))
    return str(path.relative_to(root)) + ("/__init__.py" if path.is_dir() else ".py")


def analyse_signals(static: dict[str, Any], g: Grouping) -> list[dict[str, Any]]:
    root = Path(static["root"])
    ours = _project_apps(static)
    every = [App(a["label"], a["name"], Path(a["path"])) for a in static["apps"]]
    names = {s["signal"].rsplit(".", 1)[1] for s in static["signals"]}
    sends: dict[str, list[str]] = defaultdict(list)
    for app in ours:
        for site in signal_sends(app, root, names):
            sends[site.name].append(site.where)
    out = []
    for s in static["signals"]:
        framework = s["signal_module"].startswith("django.")
        sender_app = s["sender_app"] if framework else resolve_app(s["signal_module"], every)
        receiver_app = resolve_app(s["receiver_module"], every)
        sc, rc = g.ctx(sender_app), g.ctx(receiver_app)
        out.append({"signal": s["signal"], "sender": s["sender"], "from_context": sc,
                    "to_context": rc, "receiver": s["receiver"], "where": s["where"],
                    "sent_at": [] if framework else sorted(sends.get(s["signal"].rsplit(".", 1)[1], [])),
                    "cross_context": sc is not None and rc is not None and sc != rc})
    return out


def analyse_runtime(records: Iterable[dict[str, Any]], g: Grouping) -> dict[str, Any]:
    endpoints: dict[str, dict[str, Any]] = {}
    writes: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    reads: dict[tuple[str, str, str], dict[str, Any]] = {}
    external = {label for label, a in g.apps.items() if not a["project"]}
    txs: dict[str | None, dict[str, Any]] = {}
    joins: dict[str | None, dict[str, Any]] = {}
    for rec in records:
        ep = endpoints.setdefault(rec["endpoint"], {"endpoint": rec["endpoint"], "view_app": rec.get("view_app"),
                                                    "requests": 0, "reads": set(), "writes": set()})
        ep["requests"] += 1
        for st in rec["statements"]:
            ep["reads" if st["op"] == "read" else "writes"].add(st["table"])
            if st["op"] != "write":
                reader, owner = g.ctx(st["app"]), g.table_ctx(st["table"])
                if reader and owner and reader != owner and st["where"] and \
                        g.table_owner.get(st["table"]) not in external:
                    r = reads.setdefault((reader, owner, st["where"]), {
                        "reader": reader, "owner": owner, "where": st["where"], "tables": set(),
                        "endpoints": set()})
                    r["tables"].add(st["table"])
                    r["endpoints"].add(rec["endpoint"])
                continue
            writer = g.ctx(st["app"]) or g.ctx(rec.get("view_app")) or g.table_ctx(st["table"])
            if writer is None:
                continue
            writes[st["table"]][writer][st["where"] or rec["endpoint"]].add(rec["endpoint"])
        for tx in rec["transactions"]:
            ctxs = sorted({c for t in tx["writes"] if (c := g.table_ctx(t))})
            if len(ctxs) < 2:
                continue
            entry = txs.setdefault(tx["where"], {"where": tx["where"], "context": g.ctx(tx["app"]),
                                                 "contexts": set(), "tables": set(), "endpoints": set()})
            entry["contexts"].update(ctxs)
            entry["tables"].update(tx["writes"])
            entry["endpoints"].add(rec["endpoint"])
        for j in rec.get("joins", []):
            ctxs = sorted({c for t in j["tables"] if (c := g.table_ctx(t))})
            if len(ctxs) < 2 or j["where"] is None:
                continue
            entry = joins.setdefault(j["where"], {"where": j["where"], "context": g.ctx(j["app"]),
                                                  "contexts": set(), "tables": set(), "endpoints": set()})
            entry["contexts"].update(ctxs)
            entry["tables"].update(j["tables"])
            entry["endpoints"].add(rec["endpoint"])

    def listed(d: dict[str, Any]) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, set) else v for k, v in d.items()}

    shared_writes, foreign_writes = [], []
    for table, by_ctx in sorted(writes.items()):
        owner = g.table_ctx(table)
        if len(by_ctx) >= 2:
            shared_writes.append({"table": table, "owner": owner, "writers": sorted(by_ctx),
                                  "sites": sorted(w for sites in by_ctx.values() for w in sites)})
        for ctx, sites in sorted(by_ctx.items()):
            if owner is not None and ctx != owner:
                for where, eps in sorted(sites.items()):
                    foreign_writes.append({"table": table, "owner": owner, "writer": ctx,
                                           "where": where, "endpoints": sorted(eps)})
    return {
        "endpoints": [listed(e) for e in sorted(endpoints.values(), key=lambda e: e["endpoint"])],
        "shared_writes": shared_writes, "foreign_writes": foreign_writes,
        "foreign_reads": [listed(r) for _, r in sorted(reads.items())],
        "cross_context_transactions": sorted((listed(t) for t in txs.values()),
                                             key=lambda t: (-len(t["contexts"]), str(t["where"]))),
        "cross_context_joins": sorted((listed(j) for j in joins.values()),
                                      key=lambda j: (-len(j["contexts"]), str(j["where"]))),
    }


def coupling(doc: dict[str, Any], g: Grouping) -> list[dict[str, Any]]:
    score: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def add(a: str | None, b: str | None, kind: str, n: int = 1) -> None:
        if a and b and a != b:
            pair = (a, b) if a < b else (b, a)
            score[pair][kind] += n

    for e in doc["imports"]:
        add(g.ctx(e["from"]), g.ctx(e["to"]), "imports", e["count"])
    for fk in doc["foreign_keys"]:
        add(g.ctx(fk["from_app"]), g.ctx(fk["to_app"]), "foreign_keys")
    for s in doc["signals"]:
        add(s["from_context"], s["to_context"], "signals")
    for w in doc["foreign_writes"]:
        add(w["writer"], w["owner"], "foreign_writes")
    for t in doc["cross_context_transactions"]:
        cs = t["contexts"]
        for i, a in enumerate(cs):
            for b in cs[i + 1:]:
                add(a, b, "transactions")
    for j in doc["cross_context_joins"]:
        cs = j["contexts"]
        for i, a in enumerate(cs):
            for b in cs[i + 1:]:
                add(a, b, "joins")
    rows = [{"a": a, "b": b, "score": round(sum(WEIGHTS[k] * n for k, n in parts.items()), 1),
             "parts": dict(sorted(parts.items()))} for (a, b), parts in score.items()]
    return sorted(rows, key=lambda r: (-r["score"], r["a"], r["b"]))


_ROW = re.compile(r"^\|\s*(T\w+)\s*\|[^|]*\|\s*`([^`:]+):(\d+)`")


def catalogue(root: Path, project: str) -> list[tuple[str, str, int]]:
    """(id, file, line) rows of a TANGLES.md beside the project, if it keeps one."""
    for path in (root / project / "TANGLES.md", root / "TANGLES.md"):
        if path.is_file():
            rows = []
            for line in path.read_text().splitlines():
                m = _ROW.match(line)
                if m:
                    rows.append((m.group(1), m.group(2), int(m.group(3))))
            return rows
    return []


def _name_ids(tangles: list[dict[str, Any]], rows: list[tuple[str, str, int]]) -> None:
    """Give a finding the catalogue's id when it cites the same file and (nearly) the same line.

    Each id goes to one finding, the strongest kind first. Within two lines for any kind; a
    statement found at run time executes a few lines below the query text a catalogue cites,
    so queries and reads may claim an id up to 15 lines above them. A finding naming a whole
    file (a shared module) takes the first row of that file nothing else claimed.
    """
    claimed: set[str] = set()
    for near, kinds in ((2, None), (15, {"cross-context-query", "foreign-read"})):
        for t in tangles:
            if t["id"] is not None or not t["where"] or ":" not in t["where"]:
                continue
            if kinds is not None and t["kind"] not in kinds:
                continue
            file, _, line = t["where"].rpartition(":")
            if not line.isdigit():
                continue
            best = min(((abs(int(line) - r[2]), r[0]) for r in rows if r[1] == file
                        and abs(int(line) - r[2]) <= near and r[0] not in claimed
                        and (kinds is None or r[2] <= int(line))), default=None)
            if best is not None:
                t["id"] = best[1]
                claimed.add(best[1])
    for t in tangles:  # a finding about a whole file (a shared module) takes a row left in it
        if t["id"] is None and t["where"] and ":" not in t["where"]:
            left = [r[0] for r in rows if r[1] == t["where"] and r[0] not in claimed]
            if left:
                t["id"] = left[0]
                claimed.add(left[0])


def tangles(doc: dict[str, Any], g: Grouping, root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, where: str | None, detail: str, **extra: Any) -> None:
        out.append({"id": None, "kind": kind, "where": where, "detail": detail, **extra})

    ours = {label for label, a in g.apps.items() if a["project"]}
    for fk in doc["foreign_keys"]:
        a, b = g.ctx(fk["from_app"]), g.ctx(fk["to_app"])
        if fk["kind"] == "generic_foreign_key" and fk["from_app"] in ours:
            add("generic-foreign-key", fk["where"], f"{fk['field']} ({fk['via']}) may point at any "
                f"model's rows, of any context, with no constraint", contexts=[a])
        elif a != b and (fk["from_app"] in ours):
            add("cross-context-foreign-key", fk["where"],
                f"{fk['field']} ({fk['kind']}): {fk['from_table']} → {fk['to_table']} joins {a} to {b}",
                contexts=[a, b])
    for c in doc["import_cycles"]:
        a, b = c["apps"]
        if g.ctx(a) == g.ctx(b):
            continue  # one context: its own business
        how = "hidden by a local import" if c["hidden_by_local_import"] else "at load time"
        add("import-cycle", c["where"], f"{a} and {b} import each other ({how})", contexts=[g.ctx(a), g.ctx(b)])
    for m in doc["shared_modules"]:
        add("shared-module", m["where"], f"{m['module']} (in no app) is imported by "
            f"{len(m['importers'])} apps: {', '.join(m['importers'])}", contexts=[])
    for s in doc["signals"]:
        if s["cross_context"]:
            sent = f", sent at {', '.join(s['sent_at'])}" if s["sent_at"] else ""
            add("cross-context-signal", s["where"], f"{s['signal']} from {s['from_context']} runs "
                f"{s['receiver']} in {s['to_context']}{sent}", contexts=[s["from_context"], s["to_context"]])
            for where in s["sent_at"]:
                if not any(t["kind"] == "signal-send" and t["where"] == where for t in out):
                    add("signal-send", where, f"{s['signal']}.send: receivers in other contexts run here",
                        contexts=[s["from_context"]])
    for w in doc["foreign_writes"]:
        add("foreign-write", w["where"], f"{w['writer']} writes {w['table']} (owned by {w['owner']}) "
            f"in {', '.join(w['endpoints'])}", contexts=[w["writer"], w["owner"]])
    for r in doc["foreign_reads"]:
        add("foreign-read", r["where"], f"{r['reader']} reads {', '.join(r['tables'])} (owned by "
            f"{r['owner']}) in {', '.join(r['endpoints'])}", contexts=[r["reader"], r["owner"]])
    for s in doc["shared_writes"]:
        add("shared-write", None, f"{s['table']} is written by {len(s['writers'])} contexts: "
            f"{', '.join(s['writers'])}", contexts=s["writers"])
    for t in doc["cross_context_transactions"]:
        add("cross-context-transaction", t["where"], f"one atomic block writes tables of "
            f"{len(t['contexts'])} contexts ({', '.join(t['contexts'])}) in {', '.join(t['endpoints'])}",
            contexts=t["contexts"])
    for j in doc["cross_context_joins"]:
        add("cross-context-query", j["where"], f"one statement reads tables of {len(j['contexts'])} "
            f"contexts ({', '.join(sorted(j['tables']))})", contexts=j["contexts"])
    # the strongest findings claim a catalogue id first
    order = ["cross-context-transaction", "foreign-write", "signal-send", "cross-context-signal",
             "cross-context-query", "import-cycle", "cross-context-foreign-key", "generic-foreign-key",
             "foreign-read",
             "shared-module"]
    ranked = sorted(out, key=lambda t: order.index(t["kind"]) if t["kind"] in order else 99)
    _name_ids(ranked, catalogue(root, doc["project"]))
    return out


def build(static: dict[str, Any], observed: list[dict[str, Any]],
          declared: dict[str, list[str]] | None) -> dict[str, Any]:
    g = Grouping(static["apps"], declared)
    ours = {a["label"] for a in static["apps"] if a["project"]}
    fks = [fk for fk in static["foreign_keys"] if fk["from_app"] in ours or fk["to_app"] in ours]
    for fk in fks:
        fk["cross_context"] = fk["to_app"] is None or g.ctx(fk["from_app"]) != g.ctx(fk["to_app"])
    doc: dict[str, Any] = {"project": static["project"], "contexts": g.contexts()}
    doc.update(analyse_imports(static, g))
    doc["foreign_keys"] = fks
    doc["signals"] = analyse_signals(static, g)
    doc.update(analyse_runtime(observed, g))
    doc["observed_requests"] = len(observed)
    doc["coupling"] = coupling(doc, g)
    doc["tangles"] = tangles(doc, g, Path(static["root"]))
    return doc
