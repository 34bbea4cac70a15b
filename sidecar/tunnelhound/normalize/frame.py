"""Normalized flows as columns (:class:`FlowFrame`), and their two renderings: ECS
documents as dicts (for features, rules and tests) and NDJSON lines (for sinks; also as a
ready ``_bulk`` body with :func:`encode_bulk_block`).

Keeping flows columnar until the sink is what makes the hot path fast: the NDJSON encoder
hands whole columns to C (:class:`~tunnelhound.normalize.rows.Rows`), which writes every
row's text, instead of building a dict per flow and serializing it.  :meth:`FlowFrame.documents` and :func:`encode_ndjson` describe the same
document; a test holds them equal on every capture.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from tunnelhound.normalize.columns import Columns
from tunnelhound.normalize.locality import direction_array
from tunnelhound.normalize.protocols import TRANSPORT_NAMES
from tunnelhound.normalize.rows import Rows

ECS_VERSION = "8.17.0"
DATASET = "tunnelhound.flow"
BIFLOW_KINDS = ("uniflow", "exporter", "stitched")
"""``tunnelhound.biflow`` by the int code in the ``biflow`` column."""

ABSENT = -1
"""Integer columns use -1 for "not there" (ICMP has no ports; a flow may carry no flags)."""

# Column name -> dtype.  Every frame has every column.
COLUMNS: dict[str, str] = {
    "start_ns": "i8",
    "end_ns": "i8",
    "src_port": "i8",
    "dst_port": "i8",
    "src_bytes": "i8",
    "src_packets": "i8",
    "dst_bytes": "i8",
    "dst_packets": "i8",
    "proto": "i8",
    "icmp_type": "i8",
    "icmp_code": "i8",
    "flags": "i8",
    "rev_flags": "i8",
    "initial_flags": "i8",
    "biflow_direction": "i8",
    "src_internal": "?",
    "dst_internal": "?",
    "is_v6": "?",
    "biflow": "i1",
    "sampling_rate": "f8",
    "start_iso": "O",
    "end_iso": "O",
    "event_id": "O",
    "src_ip": "O",
    "dst_ip": "O",
    "community_id": "O",
    "flow_id": "O",
    "application": "O",
    "src_mac": "O",
    "dst_mac": "O",
    "reverse_event_id": "O",
    "observer": "O",
    # observer.type ("zeek" for Zeek's conn records); None: not rendered (exporters don't say)
    "observer_type": "O",
    # JSON object body of netflow.* (exporter header and raw elements), without braces; None:
    # no netflow object (flows that did not come from an exporter, e.g. Zeek's).
    "netflow": "O",
    # JSON members (without braces) added at the top level of the document, e.g.
    # '"zeek":{"session_id":"C1"}' for sources with fields of their own; None: nothing.
    "extra": "O",
    "created": "O",
}
_SIDES = ("ip", "port", "bytes", "packets", "internal", "mac")
SWAP_PAIRS = (*((f"src_{k}", f"dst_{k}") for k in _SIDES), ("flags", "rev_flags"))
"""Columns exchanged when source and destination change places."""


@dataclass(slots=True)
class FlowFrame:
    """``n`` normalized flows; ``cols`` holds one array per name in :data:`COLUMNS` (a
    :class:`~tunnelhound.normalize.columns.Columns`: a plain dict given is wrapped in one).

    ``features`` holds the values later stages compute per flow (``features/``), one array per
    dotted name under ``tunnelhound.`` (``"dns.packets_z"`` renders as
    ``"tunnelhound":{"dns":{"packets_z":…}}``). Their dtypes say what "absent" is: float64 NaN,
    int64 :data:`ABSENT`, object None; bool is always present.
    """

    n: int
    cols: MutableMapping[str, np.ndarray]
    namespace: str = "default"
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.cols, Columns):
            self.cols = Columns(self.cols)

    @property
    def columns(self) -> Columns:
        """``cols`` as the :class:`Columns` it is (recipes and all)."""
        assert isinstance(self.cols, Columns)
        return self.cols

    @staticmethod
    def empty(namespace: str = "default") -> FlowFrame:
        """A frame with no rows."""
        return FlowFrame(0, {name: np.empty(0, dtype) for name, dtype in COLUMNS.items()}, namespace)

    @staticmethod
    def concat(frames: list[FlowFrame], namespace: str = "default") -> FlowFrame:
        """Rows of all frames, in order."""
        frames = [f for f in frames if f.n]
        if not frames:
            return FlowFrame.empty(namespace)
        if len(frames) == 1:
            return frames[0]
        cols = Columns.concat([f.columns for f in frames], list(COLUMNS))
        dtypes = {name: col.dtype for f in frames for name, col in f.features.items()}
        features = {
            name: np.concatenate([_feature_or_absent(f, name, dtype) for f in frames])
            for name, dtype in dtypes.items()
        }
        return FlowFrame(sum(f.n for f in frames), cols, frames[0].namespace, features)

    def take(self, index: np.ndarray) -> FlowFrame:
        """The rows at ``index`` (an int array or bool mask), as a new frame."""
        cols = self.columns.take(index)
        features = {name: col[index] for name, col in self.features.items()}
        return FlowFrame(len(cols["start_ns"]), cols, self.namespace, features)

    def rows(self, start: int, stop: int) -> FlowFrame:
        """Rows ``start:stop`` (views of the columns, nothing copied)."""
        cols = self.columns.take(slice(start, stop))
        features = {name: col[start:stop] for name, col in self.features.items()}
        return FlowFrame(len(cols["start_ns"]), cols, self.namespace, features)

    def documents(self) -> list[dict[str, Any]]:
        """One ECS document (dict) per row."""
        c = {name: col.tolist() for name, col in self.cols.items()}
        directions = direction_array(self.cols["src_internal"], self.cols["dst_internal"]).tolist()
        data_stream = {"type": "logs", "dataset": DATASET, "namespace": self.namespace}
        features = [(name.split("."), _feature_values(col)) for name, col in self.features.items()]
        docs = []
        for i in range(self.n):
            src_ip, dst_ip, proto = c["src_ip"][i], c["dst_ip"][i], c["proto"][i]
            sb, db, sp, dp = c["src_bytes"][i], c["dst_bytes"][i], c["src_packets"][i], c["dst_packets"][i]
            source: dict[str, Any] = {"ip": src_ip, "bytes": sb, "packets": sp}
            destination: dict[str, Any] = {"ip": dst_ip, "bytes": db, "packets": dp}
            if c["src_port"][i] != ABSENT:
                source["port"] = c["src_port"][i]
                destination["port"] = c["dst_port"][i]
            source["locality"] = _locality(c["src_internal"][i])
            destination["locality"] = _locality(c["dst_internal"][i])
            if c["src_mac"][i] is not None:
                source["mac"] = c["src_mac"][i]
            if c["dst_mac"][i] is not None:
                destination["mac"] = c["dst_mac"][i]
            network: dict[str, Any] = {
                "transport": TRANSPORT_NAMES.get(proto, str(proto)),
                "iana_number": str(proto),
                "type": "ipv6" if c["is_v6"][i] else "ipv4",
                "bytes": sb + db,
                "packets": sp + dp,
                "community_id": c["community_id"][i],
                "direction": directions[i],
            }
            if c["application"][i] is not None:
                network["application"] = c["application"][i]
            th: dict[str, Any] = {"biflow": BIFLOW_KINDS[c["biflow"][i]]}
            if c["reverse_event_id"][i] is not None:
                th["reverse_event_id"] = c["reverse_event_id"][i]
            if c["sampling_rate"][i] != 1.0:
                th["sampling_rate"] = c["sampling_rate"][i]
            if c["icmp_type"][i] != ABSENT:
                th["icmp" if proto == 1 else "icmpv6"] = {
                    "type": c["icmp_type"][i],
                    "code": c["icmp_code"][i],
                }
            for path, values in features:
                if (value := values[i]) is not None:
                    _nest(th, path, value)
            observer: dict[str, Any] = {"ip": c["observer"][i]}
            if c["observer_type"][i] is not None:
                observer["type"] = c["observer_type"][i]
            doc: dict[str, Any] = {
                "@timestamp": c["end_iso"][i],
                "ecs": {"version": ECS_VERSION},
                "data_stream": data_stream,
                "event": {
                    "kind": "event",
                    "category": ["network"],
                    "type": ["connection"],
                    "action": "network_flow",
                    "dataset": DATASET,
                    "module": "tunnelhound",
                    "id": c["event_id"][i],
                    "start": c["start_iso"][i],
                    "end": c["end_iso"][i],
                    "duration": max(c["end_ns"][i] - c["start_ns"][i], 0),
                    "created": c["created"][i],
                },
                "source": source,
                "destination": destination,
                "network": network,
                "flow": {
                    "id": c["flow_id"][i],
                    "locality": _flow_locality(c["src_internal"][i], c["dst_internal"][i]),
                },
                "observer": observer,
                "related": {"ip": [src_ip, dst_ip] if src_ip != dst_ip else [src_ip]},
            }
            if c["netflow"][i] is not None:
                doc["netflow"] = orjson.loads(f"{{{c['netflow'][i]}}}")
            doc["tunnelhound"] = th
            if c["extra"][i] is not None:
                doc.update(orjson.loads(f"{{{c['extra'][i]}}}"))
            docs.append(doc)
        return docs


def _locality(internal: bool) -> str:
    return "internal" if internal else "external"


def _flow_locality(src_internal: bool, dst_internal: bool) -> str:
    return "internal" if src_internal and dst_internal else "external"


# --------------------------------------------------------------------------- NDJSON


def encode_ndjson(frame: FlowFrame) -> list[bytes]:
    """One JSON line per row (no newline), equal as JSON to :meth:`FlowFrame.documents`."""
    return _document(Rows(frame.n), frame).lines() if frame.n else []


def encode_ndjson_block(frame: FlowFrame) -> bytes:
    """All rows as one NDJSON block, each line ending in a newline (one buffer for the lot)."""
    return ndjson_rows(frame).block() if frame.n else b""


def ndjson_rows(frame: FlowFrame) -> Rows:
    """The recipe of :func:`encode_ndjson_block`, for a writer that renders it into one reused
    buffer, whole or a range of rows at a time (:meth:`Rows.block_into`)."""
    return _document(Rows(frame.n), frame).lit("\n")


def encode_bulk_block(frame: FlowFrame, index: str) -> bytes:
    """All rows as one ``_bulk`` body: per row a ``create`` action into ``index`` with ``_id`` =
    ``event.id``, then the row's NDJSON document, each line ending in a newline.

    The action line is two more pieces of the same row (event ids are hex digests we make,
    safe in JSON without escaping); equal to building each row's action with orjson and
    appending its :func:`encode_ndjson` line.
    """
    if not frame.n:
        return b""
    rows = Rows(frame.n).lit(f'{{"create":{{"_index":{orjson.dumps(index).decode()},"_id":"')
    _text(rows, frame.columns, "event_id").lit('"}}\n')
    return _document(rows, frame).lit("\n").block()


def _document(line: Rows, frame: FlowFrame) -> Rows:
    """Append the pieces of each row's ECS document to ``line``."""
    c = frame.columns
    proto = c["proto"]
    _text(line.lit('{"@timestamp":"'), c, "end_iso")
    line.lit(f'","ecs":{{"version":"{ECS_VERSION}"}},"data_stream":{{"type":"logs","dataset":"{DATASET}",')
    line.lit(f'"namespace":"{frame.namespace}"}},"event":{{"kind":"event","category":["network"],')
    line.lit(
        f'"type":["connection"],"action":"network_flow","dataset":"{DATASET}","module":"tunnelhound","id":"'
    )
    _text(line, c, "event_id").lit('","start":"')
    _text(line, c, "start_iso").lit('","end":"')
    _text(line, c, "end_iso").lit('","duration":')
    line.integer(np.maximum(c["end_ns"] - c["start_ns"], 0)).lit(',"created":"')
    _text(line, c, "created")
    has_ports = c["src_port"] != ABSENT
    for side, prefix in (("src", '"},"source":{"ip":"'), ("dst", '},"destination":{"ip":"')):
        _text(line.lit(prefix), c, f"{side}_ip").lit('"')
        line.integer(c[f"{side}_port"], before=',"port":', mask=has_ports)
        line.lit(',"bytes":').integer(c[f"{side}_bytes"]).lit(',"packets":').integer(c[f"{side}_packets"])
        line.lit(',"locality":"').choose(c[f"{side}_internal"], "internal", "external").lit('"')
        line.text(c[f"{side}_mac"].tolist(), before=',"mac":"', after='"')
    line.lit('},"network":{"transport":"').pick(*_transport(proto)).lit('","iana_number":"').integer(proto)
    line.lit('","type":"').choose(c["is_v6"], "ipv6", "ipv4")
    line.lit('","bytes":').integer(c["src_bytes"] + c["dst_bytes"])
    line.lit(',"packets":').integer(c["src_packets"] + c["dst_packets"])
    _text(line.lit(',"community_id":'), c, "community_id", before='"', after='"', absent="null")
    direction = c["src_internal"].astype(np.int64) * 2 + c["dst_internal"]
    line.lit(',"direction":"').pick(direction, _DIRECTIONS).lit('"')
    line.json(c["application"].tolist(), before=',"application":')
    _text(line.lit('},"flow":{"id":'), c, "flow_id", before='"', after='"', absent="null")
    line.lit(',"locality":"').choose(c["src_internal"] & c["dst_internal"], "internal", "external")
    _text(line.lit('"},"observer":{"ip":"'), c, "observer").lit('"')
    line.text(c["observer_type"].tolist(), before=',"type":"', after='"')
    _text(line.lit('},"related":{"ip":["'), c, "src_ip")
    _text(line, c, "dst_ip", before='","', mask=~c.text_equal("src_ip", "dst_ip")).lit('"]}')
    _text(line, c, "netflow", before=',"netflow":{', after="}")
    line.lit(',"tunnelhound":{"biflow":"').pick(c["biflow"], BIFLOW_KINDS).lit('"')
    _text(line, c, "reverse_event_id", before=',"reverse_event_id":"', after='"')
    rate = c["sampling_rate"]
    sampled = rate != 1.0
    if sampled.any():
        line.text([repr(r) for r in rate.tolist()], before=',"sampling_rate":', mask=sampled)
    icmp, v4 = c["icmp_type"] != ABSENT, proto == 1
    for key, mask in (("icmp", icmp & v4), ("icmpv6", icmp & ~v4)):
        line.integer(c["icmp_type"], before=f',"{key}":{{"type":', mask=mask)
        line.integer(c["icmp_code"], before=',"code":', after="}", mask=mask)
    if frame.features:
        _members(line, _feature_tree(frame.features), np.ones(frame.n, dtype=bool))
    return line.lit("}").text(c["extra"].tolist(), before=",").lit("}")


def _text(
    line: Rows,
    cols: Columns,
    name: str,
    before: str = "",
    after: str = "",
    absent: str = "",
    mask: np.ndarray | None = None,
) -> Rows:
    """Append text column ``name`` (None rows absent): its recipe where it has one, so the
    kernel renders it from the numbers, else its strings."""
    recipe = cols.recipe(name)
    if recipe is None:
        return line.text(cols[name].tolist(), before, after, absent, mask)
    present = recipe.present
    if present is None:
        return line.splice(recipe.rows, before, after, mask)
    if mask is not None:
        present = present & mask
    return line.where(absent, ~present).splice(recipe.rows, before, after, present)


# ------------------------------------------------------------------------- features

_FeatureTree = dict[str, "_FeatureTree | np.ndarray"]


def _feature_values(col: np.ndarray) -> list[Any]:
    """Python values of a feature column, None where absent (see :class:`FlowFrame`)."""
    if col.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in col.tolist()]
    if col.dtype.kind in "iu":
        return [v if v != ABSENT else None for v in col.tolist()]
    return col.tolist()


def _feature_or_absent(frame: FlowFrame, name: str, dtype: np.dtype[Any]) -> np.ndarray:
    """The frame's feature column, or one that is absent on every row (for concat)."""
    if name in frame.features:
        return frame.features[name]
    absent = {"f": np.nan, "i": ABSENT, "b": False}.get(dtype.kind)
    return np.full(frame.n, absent, dtype=dtype)


def _nest(into: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        into = into.setdefault(key, {})
    into[path[-1]] = value


def _feature_tree(features: dict[str, np.ndarray]) -> _FeatureTree:
    tree: _FeatureTree = {}
    for name, col in features.items():
        node = tree
        *parents, leaf = name.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            assert isinstance(child, dict), f"feature {name!r} nests under a value"
            node = child
        node[leaf] = col
    return tree


def _present(node: _FeatureTree | np.ndarray) -> np.ndarray:
    """Rows where a feature (or any feature of a subtree) has a value."""
    if isinstance(node, dict):
        return np.logical_or.reduce([_present(child) for child in node.values()])
    kind = node.dtype.kind
    if kind == "b":
        return np.ones(len(node), dtype=bool)
    if kind in "iu":
        return np.asarray(node != ABSENT)
    if kind == "f":
        return np.isfinite(node)
    return np.asarray(node != None)  # noqa: E711 (elementwise)


def _members(line: Rows, tree: _FeatureTree, written: np.ndarray) -> None:
    """Append the JSON members of ``tree`` present on each row, comma-separated; ``written``:
    rows whose enclosing object already has a member (a comma goes first). An object member
    is opened and closed only on rows where one of its features is present."""
    written = written.copy()
    for key, node in tree.items():
        present = _present(node)
        line.where(",", written & present)
        if isinstance(node, dict):
            _members(line.where(f'"{key}":{{', present), node, np.zeros(line.n, dtype=bool))
            line.where("}", present)
        else:
            _leaf(line, node, f'"{key}":', present)
        written |= present


def _leaf(line: Rows, col: np.ndarray, before: str, present: np.ndarray) -> None:
    """One feature's JSON value (as orjson writes it) where ``present``."""
    kind = col.dtype.kind
    if kind in "biu":
        line.integer(col, before=before, mask=present)
    elif kind == "f":
        # One orjson call for the present values (most rows lack most float features); each
        # row then points at its number in that text: floats hold no commas.
        if not present.any():
            return
        text = orjson.dumps(col[present].tolist())
        commas = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == _COMMA)
        starts, ends = np.zeros(len(col), dtype=np.int64), np.zeros(len(col), dtype=np.int64)
        starts[present] = np.r_[1, commas + 1]
        ends[present] = np.r_[commas, len(text) - 1]
        line.spans(text, starts, ends, before=before, mask=present)
    elif set(map(type, values := col.tolist())) <= _TEXT_TYPES:
        line.json(values, before=before)
    else:
        dumps = orjson.dumps
        line.text([dumps(v).decode() if v is not None else None for v in col.tolist()], before=before)


_COMMA = ord(",")
_TEXT_TYPES = {str, type(None)}
"""Types of an object feature column written as JSON strings (None: the member is left out)."""


_DIRECTIONS = direction_array(np.array([0, 0, 1, 1], dtype=bool), np.array([0, 1, 0, 1], dtype=bool)).tolist()
"""``network.direction`` by ``src_internal * 2 + dst_internal``."""


_TRANSPORTS = [TRANSPORT_NAMES.get(p, str(p)) for p in range(256)]


def _transport(proto: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes and texts for ``network.transport``: the protocol's name, else its number."""
    if ((proto >= 0) & (proto <= 255)).all():
        return proto, _TRANSPORTS
    unique, codes = np.unique(proto, return_inverse=True)
    return codes.reshape(-1), [TRANSPORT_NAMES.get(p, str(p)) for p in unique.tolist()]
