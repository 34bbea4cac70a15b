"""Sources: where export datagrams come from (sockets, captures, raw payload files).

Every source yields :class:`~tunnelhound.model.Datagram` values: the UDP payload, the
exporter's address and port, and the arrival (or capture) time.  Sources know nothing of
NetFlow or IPFIX; decoding starts in :mod:`tunnelhound.decode`.
"""

from tunnelhound.sources.capture import CaptureReader, CaptureStats, read_capture
from tunnelhound.sources.dat import DEFAULT_EXPORTER, parse_exporter, read_dat
from tunnelhound.sources.files import ReplaySource, iter_replay, open_replay, sniff_format
from tunnelhound.sources.udp import DEFAULT_RECEIVE_BUFFER, UdpListener

__all__ = [
    "DEFAULT_EXPORTER",
    "DEFAULT_RECEIVE_BUFFER",
    "CaptureReader",
    "CaptureStats",
    "ReplaySource",
    "UdpListener",
    "iter_replay",
    "open_replay",
    "parse_exporter",
    "read_capture",
    "read_dat",
    "sniff_format",
]
