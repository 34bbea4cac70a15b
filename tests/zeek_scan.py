"""A scripted vertical port scan among benign connections, as ``Tunnelhound::conn`` arguments.

The values are the plain ones of ``tunnelhound.zeek.events`` (``Port``, ``datetime`` ...), in
the order ``main.zeek`` declares; each transport's test encodes them its own way.  What the
built-in rules should make of it: one ``port_scan_vertical`` for ``SCANNER`` -> ``TARGET``
(20 closed or filtered ports within a second: REJ ``Sr`` and S0 ``S``, as Zeek logs them),
nothing for ``CLIENT`` (answered connections, and 3 closed ports: below the 15 of the rule).
The last connections come 2 minutes later, so the rules' watermark (flow time minus
``rules.lateness``, 60 s) passes the scan's window and it is judged without an end of input.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tunnelhound.zeek.events import CONN, Port

START = datetime(2026, 11, 23, 13, 40, 10, 100000, tzinfo=UTC)
SCANNER, TARGET = "10.77.1.68", "198.18.5.10"
CLIENT, WEB, MAIL = "10.77.1.20", "198.18.5.20", "198.18.5.30"
SCAN_PORTS = range(1000, 1020)


def conn_args(
    uid: str,
    orig_h: str,
    sport: int,
    resp_h: str,
    dport: int,
    *,
    orig: tuple[int, int],
    resp: tuple[int, int],
    state: str,
    history: str,
    start: datetime,
    duration: float = 0.0,
    service: str = "",
) -> tuple[Any, ...]:
    """One TCP conn event's arguments; ``orig``/``resp`` are (packets, IP bytes)."""
    args = (
        1,
        uid,
        start,
        orig_h,
        Port(sport, "tcp"),
        resp_h,
        Port(dport, "tcp"),
        "tcp",
        service,
        timedelta(seconds=duration),
        max(orig[1] - 40 * orig[0], 0),  # payload bytes: IP bytes less 40 a packet
        max(resp[1] - 40 * resp[0], 0),
        orig[1],
        resp[1],
        orig[0],
        resp[0],
        state,
        history,
        True,
        False,
        "",
    )
    assert len(args) == len(CONN.args)
    return args


def _web(
    uid: str, sport: int, seconds: float, resp_bytes: int, resp_h: str = WEB, dport: int = 443
) -> tuple[Any, ...]:
    return conn_args(
        uid,
        CLIENT,
        sport,
        resp_h,
        dport,
        orig=(6, 520 + sport % 7 * 31),
        resp=(5, resp_bytes),
        state="SF",
        history="ShADadFf",
        start=START + timedelta(seconds=seconds),
        duration=0.8,
        service="ssl" if dport == 443 else "http",
    )


def scan_scenario() -> list[tuple[Any, ...]]:
    """The conn events in the order Zeek would log them (by connection end)."""
    events = [_web("Cweb1", 53124, 0.0, 4200), _web("Cweb2", 53188, 3.7, 18300)]
    for i, port in enumerate(SCAN_PORTS):
        closed = i % 2 == 0  # closed ports answer with RST (REJ); filtered ones stay silent (S0)
        events.append(
            conn_args(
                f"Cscan{i:02}",
                SCANNER,
                40000 + i,
                TARGET,
                port,
                orig=(1, 44),
                resp=(1, 40) if closed else (0, 0),
                state="REJ" if closed else "S0",
                history="Sr" if closed else "S",
                start=START + timedelta(seconds=1 + i * 0.05),
            )
        )
    for i, port in enumerate((25, 110, 143)):  # a mail client trying closed ports: not a scan
        events.append(
            conn_args(
                f"Cmail{i}",
                CLIENT,
                50000 + i,
                MAIL,
                port,
                orig=(1, 60),
                resp=(1, 40),
                state="REJ",
                history="Sr",
                start=START + timedelta(seconds=5 + i),
            )
        )
    events.append(_web("Cweb3", 53301, 9.2, 7700))
    # Two minutes on: the watermark passes the scan's window.
    events += [_web("Clate1", 54010, 120.0, 2900, MAIL, 80), _web("Clate2", 54022, 131.5, 3300, MAIL, 80)]
    return events
