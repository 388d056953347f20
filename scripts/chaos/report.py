"""The soak's summary: its figures, a table, one JSON line (``REWIND_SOAK {...}``) and a one-line verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from scripts.chaos.checks import Finding
from scripts.chaos.children import SelfExit
from scripts.chaos.monitor import Stall

__all__ = ["Outage", "Event", "Summary"]


@dataclass(frozen=True)
class Outage:
    """One broker restart: stopped at ``start_s``, answering again at ``end_s`` (seconds since the soak began)."""

    start_s: float
    end_s: float
    hard: bool


@dataclass(frozen=True)
class Event:
    """A chaos event, for the timeline and for naming what a stall overlapped."""

    at_s: float
    what: str


@dataclass
class Summary:
    """Everything a soak run found."""

    run_dir: Path
    config: dict[str, Any]
    chaos_s: float = 0.0
    settle_s: float = 0.0
    produced: dict[str, Any] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    self_exits: list[SelfExit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    stall: Stall | None = None
    stalls: list[Stall] = field(default_factory=list)
    caught_up: str | None = None  # None: everything caught up; else what did not
    findings: list[Finding] = field(default_factory=list)
    dlq: dict[str, tuple[int, int]] = field(default_factory=dict)  # pipeline -> (expected, found)
    late_letters: int = 0
    final_exit_codes: dict[str, int | None] = field(default_factory=dict)
    harness_error: str | None = None

    @property
    def mismatches(self) -> int:
        return sum(f.bad for f in self.findings)

    def longest_stall_outside_outages(self) -> tuple[float, Stall | None]:
        """The longest stall once the time the broker was down is taken out of it (a pipeline cannot commit then)."""
        best: tuple[float, Stall | None] = (0.0, None)
        for stall in self.stalls:
            down = sum(max(0.0, min(stall.end_s, o.end_s) - max(stall.start_s, o.start_s)) for o in self.outages)
            if stall.seconds - down > best[0]:
                best = (stall.seconds - down, stall)
        return best

    def stall_overlaps(self) -> list[str]:
        """The chaos events from shortly before the longest stall began to its end."""
        if self.stall is None:
            return []
        stall = self.stall
        return [f"{e.what} @{e.at_s:.0f}s" for e in self.events
                if stall.start_s - 10 <= e.at_s <= stall.end_s and (stall.pipeline in e.what or "broker" in e.what)]

    def failures(self) -> list[str]:
        """Why the run failed (empty: it passed)."""
        out = []
        if self.harness_error:
            out.append(self.harness_error)
        if self.mismatches:
            out.append(f"{self.mismatches} mismatches ({', '.join(f'{f.what}: {f.bad}' for f in self.findings if f.bad)})")
        if self.self_exits:
            exits = ", ".join(f"{e.name} rc={e.returncode} @{e.at_s:.0f}s" for e in self.self_exits)
            out.append(f"{len(self.self_exits)} processes exited on their own ({exits})")
        if self.caught_up:
            out.append(f"not caught up: {self.caught_up}")
        unclean = {n: rc for n, rc in self.final_exit_codes.items() if rc not in (0, None)}
        if unclean:
            out.append(f"unclean stop on SIGTERM: {unclean}")
        return out

    def verdict(self) -> str:
        """One line."""
        failures = self.failures()
        if failures:
            return "soak FAILED: " + "; ".join(failures)
        return (f"soak passed: {sum(self.kills.values())} kills, {len(self.outages)} broker restarts, "
                f"{self.produced.get('acked', 0):,} events, 0 mismatches")

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "config": self.config, "chaos_s": round(self.chaos_s, 1), "settle_s": round(self.settle_s, 1),
            "produced": self.produced, "kills": self.kills, "kills_total": sum(self.kills.values()),
            "broker_restarts": len(self.outages),
            "outages": [{"start_s": round(o.start_s, 1), "end_s": round(o.end_s, 1), "hard": o.hard} for o in self.outages],
            "self_exits": [{"name": e.name, "at_s": round(e.at_s, 1), "returncode": e.returncode, "log": str(e.log_path),
                            "last_lines": list(e.last_lines)} for e in self.self_exits],
            "max_stall_s": round(self.stall.seconds, 1) if self.stall else 0.0,
            "max_stall_outside_outages_s": round(self.longest_stall_outside_outages()[0], 1),
            "stalls_over_10s": [{"pipeline": st.pipeline, "start_s": round(st.start_s, 1), "end_s": round(st.end_s, 1)}
                                for st in sorted(self.stalls, key=lambda st: st.start_s) if st.seconds > 10],
            "max_stall": None if self.stall is None else {"pipeline": self.stall.pipeline, "start_s": round(self.stall.start_s, 1),
                                                          "end_s": round(self.stall.end_s, 1), "overlaps": self.stall_overlaps()},
            "caught_up": self.caught_up is None, "not_caught_up": self.caught_up,
            "mismatches": self.mismatches,
            "findings": [{"what": f.what, "compared": f.compared, "bad": f.bad, "examples": f.examples} for f in self.findings],
            "dlq": {k: {"expected": e, "found": n} for k, (e, n) in self.dlq.items()}, "late_letters": self.late_letters,
            "final_exit_codes": self.final_exit_codes, "harness_error": self.harness_error,
            "events": [f"{e.at_s:.0f}s {e.what}" for e in self.events],
            "verdict": self.verdict(), "passed": not self.failures(),
        }

    def print(self, console: Console) -> None:
        """The human summary (table and examples); the caller prints the JSON line and the verdict."""
        table = Table(title=f"chaos soak: {self.run_dir}", show_header=True)
        table.add_column("figure")
        table.add_column("value")
        table.add_row("chaos / catch-up", f"{self.chaos_s:.0f} s / {self.settle_s:.0f} s")
        p = self.produced
        table.add_row("events produced (acked)", f"{p.get('sent', 0):,} ({p.get('acked', 0):,}, failed {p.get('failed', 0)})")
        table.add_row("orders topic", f"{p.get('in_topic', 0):,} records ({p.get('producer_copies', 0)} exact copies from producer retries)")
        table.add_row("kills (kill -9)", f"{sum(self.kills.values())}: " + ", ".join(f"{n} {k}" for n, k in self.kills.items()))
        outages = ", ".join(f"{'SIGKILL' if o.hard else 'SIGTERM'} @{o.start_s:.0f}s, back @{o.end_s:.0f}s" for o in self.outages)
        table.add_row("broker restarts", outages or "0")
        table.add_row("exited on their own", ", ".join(f"{e.name} rc={e.returncode} @{e.at_s:.0f}s" for e in self.self_exits) or "0")
        stall = "0" if self.stall is None else (f"{self.stall.seconds:.0f} s ({self.stall.pipeline}, {self.stall.start_s:.0f}-{self.stall.end_s:.0f}s; "
                                                f"overlaps: {', '.join(self.stall_overlaps()) or 'no chaos event'})")
        table.add_row("max stall", stall)
        net, of = self.longest_stall_outside_outages()
        table.add_row("max stall, broker downtime taken out", "0" if of is None else f"{net:.0f} s ({of.pipeline}, {of.start_s:.0f}-{of.end_s:.0f}s)")
        for f in self.findings:
            table.add_row(f"mismatches {f.what}", f"{f.bad} of {f.compared}")
        for pipeline, (expected, found) in self.dlq.items():
            table.add_row(f"dlq {pipeline}", f"expected {expected}, found {found}")
        table.add_row("revenue-hourly late letters", str(self.late_letters))
        table.add_row("caught up", "yes" if self.caught_up is None else f"no: {self.caught_up}")
        table.add_row("exit codes on SIGTERM", ", ".join(f"{n}={rc}" for n, rc in self.final_exit_codes.items()))
        console.print(table)
        for f in self.findings:
            for example in f.examples:
                console.print(f"  {f.what}: {example}", markup=False, highlight=False)
        for e in self.self_exits:
            console.print(f"  {e.name} exited with {e.returncode} at {e.at_s:.0f}s ({e.log_path}); last lines:", markup=False, highlight=False)
            for line in e.last_lines:
                console.print(f"    {line}", markup=False, highlight=False)

    def json_line(self) -> str:
        return "REWIND_SOAK " + json.dumps(self.to_json(), sort_keys=True)
