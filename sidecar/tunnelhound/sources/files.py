"""Replay files of any supported kind: pcap, pcapng or raw ``.dat`` (export datagrams) and
nfcapd files (flow records nfcapd already decoded), told apart by magic bytes.

``open_replay`` picks the reader for one file; ``iter_replay_items`` chains several and draws
one progress bar over their total size; ``iter_replay`` is the same for datagram files only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Final, Literal

from tunnelhound.errors import SourceError
from tunnelhound.model import Datagram
from tunnelhound.normalize.records import FlowRecord
from tunnelhound.sources.capture import PCAP_MAGICS, PCAPNG_MAGIC, CaptureReader, CaptureStats
from tunnelhound.sources.dat import DEFAULT_EXPORTER, canonical_ip, read_dat
from tunnelhound.sources.nfdump import NfdumpStats, is_nfcapd, iter_nfdump_chunks

__all__ = [
    "ReplayFormat",
    "ReplayItem",
    "ReplaySource",
    "iter_replay",
    "iter_replay_items",
    "open_replay",
    "sniff_format",
]

ReplayFormat = Literal["pcap", "pcapng", "dat", "nfcapd"]
ReplayItem = Datagram | list[FlowRecord]
"""A datagram of a capture or ``.dat`` file, or a chunk of flow records of an nfcapd file."""

# Redrawing the bar per datagram would cost more than reading it; a step of this many bytes
# keeps the overhead invisible while still moving several times per second on any disk.
_PROGRESS_STEP: Final = 256 * 1024


def sniff_format(path: str | os.PathLike[str]) -> ReplayFormat:
    """Return the file's format from its first four bytes; anything unknown is ``dat``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise SourceError(f"{name}: cannot open replay file: {exc.strerror or exc}") from exc
    if magic in PCAP_MAGICS:
        return "pcap"
    if magic == PCAPNG_MAGIC:
        return "pcapng"
    if is_nfcapd(magic):
        return "nfcapd"
    return "dat"


class ReplaySource:
    """The datagrams of one replay file, with its size and read position for progress.

    For captures, the exporter is each packet's IP source unless ``exporter`` overrides it
    (useful to replay one exporter's traffic as coming from another).  For ``.dat`` files it
    is ``exporter`` or :data:`~tunnelhound.sources.dat.DEFAULT_EXPORTER`.
    """

    def __init__(self, path: str | os.PathLike[str], exporter: tuple[str, int] | None = None) -> None:
        self.path = os.fspath(path)
        self.format: ReplayFormat = sniff_format(self.path)
        if exporter is not None and not 0 <= exporter[1] <= 65535:
            raise ValueError(f"exporter port {exporter[1]} is out of range 0-65535")
        self.exporter = None if exporter is None else (canonical_ip(exporter[0]), exporter[1])
        self._capture = CaptureReader(self.path) if self.format in ("pcap", "pcapng") else None
        self.nfdump = NfdumpStats()
        """Records read and skipped, for nfcapd files."""
        self._dat_read = 0
        try:
            self.size = os.path.getsize(self.path)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open replay file: {exc.strerror or exc}") from exc

    def __repr__(self) -> str:
        return f"ReplaySource({self.path!r}, format={self.format!r}, exporter={self.exporter!r})"

    @property
    def bytes_read(self) -> int:
        """How far into the file reading has got, in bytes."""
        return self._capture.bytes_read if self._capture is not None else self._dat_read

    @property
    def stats(self) -> CaptureStats | None:
        """Packet counters of the last capture read; None for ``.dat`` files."""
        return self._capture.stats if self._capture is not None else None

    def items(self) -> Iterator[ReplayItem]:
        """The file's datagrams, or for an nfcapd file its flow records in chunks."""
        if self.format == "nfcapd":
            yield from iter_nfdump_chunks(self.path, self.nfdump)
            self._dat_read = self.size
        else:
            yield from self

    def __iter__(self) -> Iterator[Datagram]:
        if self.format == "nfcapd":
            raise SourceError(f"{self.path}: an nfcapd file holds flow records, not datagrams")
        if self._capture is None:
            ip, port = self.exporter or DEFAULT_EXPORTER
            self._dat_read = 0
            yield from read_dat(self.path, ip, port)
            self._dat_read = self.size
            return
        if self.exporter is None:
            yield from self._capture
            return
        ip, port = self.exporter
        for datagram in self._capture:
            yield Datagram(data=datagram.data, exporter_ip=ip, exporter_port=port, received=datagram.received)


def open_replay(path: str | os.PathLike[str], exporter: tuple[str, int] | None = None) -> ReplaySource:
    """Open one pcap, pcapng, ``.dat`` or nfcapd file for replay, chosen by its magic bytes."""
    return ReplaySource(path, exporter)


def iter_replay(
    paths: Iterable[str | os.PathLike[str]],
    exporter: tuple[str, int] | None = None,
    progress: bool = False,
) -> Iterator[Datagram]:
    """Yield the datagrams of every file in order (see :func:`iter_replay_items`).

    Raises :class:`SourceError` before the first datagram if a file is an nfcapd file.
    """
    for item in iter_replay_items(paths, exporter, progress, datagrams_only=True):
        assert isinstance(item, Datagram)
        yield item


def iter_replay_items(
    paths: Iterable[str | os.PathLike[str]],
    exporter: tuple[str, int] | None = None,
    progress: bool = False,
    *,
    datagrams_only: bool = False,
) -> Iterator[ReplayItem]:
    """Yield the datagrams (and nfcapd record chunks) of every file in order, with one tqdm
    bar over the total bytes.

    Every file is opened (and sniffed) before the first item, so a missing or unreadable
    file fails the run at once rather than halfway.  Callers pass ``sys.stderr.isatty()`` as
    ``progress`` so logs and pipes stay free of bar redraws.
    """
    sources = [open_replay(path, exporter) for path in paths]
    if datagrams_only and (nfcapd := [s.path for s in sources if s.format == "nfcapd"]):
        raise SourceError(f"{nfcapd[0]}: an nfcapd file holds flow records, not datagrams")
    if not progress:
        for source in sources:
            yield from source.items()
        return
    # Imported here so runs without a bar (services, tests) never pay for tqdm's import.
    from tqdm import tqdm

    with tqdm(
        total=sum(s.size for s in sources), unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr
    ) as bar:
        for source in sources:
            bar.set_description(os.path.basename(source.path), refresh=False)
            shown = 0
            for item in source.items():
                position = source.bytes_read
                if position - shown >= _PROGRESS_STEP:
                    bar.update(position - shown)
                    shown = position
                yield item
            bar.update(source.size - shown)
