"""How a worker's stitched frame travels to the analysis process: only what the stages read.

A frame as the sinks see it carries columns that exist only to be rendered (ISO times, the
raw ``netflow.*`` object, TCP flag words, the ``created`` stamp): about 916 bytes a flow once
pickled.  The analysis stages (the rule engine, :mod:`tunnelhound.rules.fields`) never read
those, so a worker sends the other columns and the features, about 333 bytes a flow; that
is most of the pipe's and the main process's cost per flow.

A frame rebuilt by :func:`decode` therefore holds :data:`ANALYSIS_COLUMNS` only: a stage
plugged into :data:`~tunnelhound.service.analysis.ANALYSIS_STAGES` must read its columns
through ``frame.cols[name]`` for those names (``replay`` hands stages whole frames, so a
test there would not notice a missing one).
"""

from __future__ import annotations

import operator
import pickle
from itertools import repeat
from typing import Any, Final

import numpy as np

from tunnelhound.normalize.columns import Columns, Text
from tunnelhound.normalize.frame import COLUMNS, FlowFrame

__all__ = ["ANALYSIS_COLUMNS", "RENDER_ONLY_COLUMNS", "decode", "encode", "frame_of"]

RENDER_ONLY_COLUMNS: Final = frozenset(
    {
        "start_iso",
        "end_iso",
        "created",
        "netflow",
        "extra",
        "flags",
        "rev_flags",
        "initial_flags",
        "biflow_direction",
    }
)
"""Columns only the flow sinks read (rendered into documents); the features are computed
in the worker, before the frame is sent, so they need none of these either."""

ANALYSIS_COLUMNS: Final = tuple(name for name in COLUMNS if name not in RENDER_ONLY_COLUMNS)
"""Columns a frame carries to the analysis process, in :data:`COLUMNS` order."""


_SEP: Final = "\x00"
"""Joins a text column's values: no address, id or name we render contains it (a column
that does falls back to pickling its objects)."""

_Text = tuple[str, int, "np.ndarray | None"]
"""A text column on the wire: its present values joined, how many (0: all None), and where
None is (None: nowhere)."""


def encode(frame: FlowFrame, *head: object) -> bytes:
    """``frame``'s analysis columns and features as bytes, after the items of ``head`` (a
    worker's message kind and number: one pickle for the message, not a pickle of a pickle,
    which copied every frame once more).

    Pickle (protocol 5) writes a numeric column as its raw buffer, but an object column item
    by item, memo and all: about 2 us a row for each of the ten text columns, more than the
    rest of the message together.  A text column therefore travels as one joined string
    (:func:`_text`), which pickle copies whole, and is split again on the other side.
    """
    cols = frame.columns
    # A column still held as a recipe (event ids, community ids: digests and numbers) travels
    # as one: its arrays pickle as raw buffers, and the analysis renders text only if read.
    columns = [cols.recipe(name) or _column(cols[name]) for name in ANALYSIS_COLUMNS]
    features = {name: _column(values) for name, values in frame.features.items()}
    return pickle.dumps(
        (*head, frame.n, frame.namespace, columns, features), protocol=pickle.HIGHEST_PROTOCOL
    )


def decode(data: bytes) -> FlowFrame:
    """The frame :func:`encode` sent, with :data:`ANALYSIS_COLUMNS` only."""
    return frame_of(pickle.loads(data))


def frame_of(message: tuple[Any, ...]) -> FlowFrame:
    """The frame of an unpickled :func:`encode` message (its last four items)."""
    n, namespace, columns, features = message[-4:]
    cols = Columns(
        {
            name: col if isinstance(col, Text) else _array(col, n)
            for name, col in zip(ANALYSIS_COLUMNS, columns, strict=True)
        }
    )
    return FlowFrame(n, cols, namespace, {name: _array(col, n) for name, col in features.items()})


def _column(values: np.ndarray) -> np.ndarray | _Text:
    """A text (object) column as a :data:`_Text` when every item is a str or None, else as is."""
    if values.dtype != object:
        return values
    items = values.tolist()
    nones = items.count(None)  # at C speed: most columns are all None (MACs) or hold none
    if nones == len(items):
        return "", 0, None  # nothing but None (no MAC, no application): send no mask
    mask = None
    if nones:
        mask = np.fromiter(map(operator.is_, items, repeat(None)), dtype=bool, count=len(items))
        items = values[~mask].tolist()
    try:
        joined = _SEP.join(items)
    except TypeError:  # not all text: pickle the objects
        return values
    if items and joined.count(_SEP) != len(items) - 1:
        return values  # a value holds the separator
    return joined, len(items), mask


def _array(col: np.ndarray | _Text, n: int) -> np.ndarray:
    if isinstance(col, np.ndarray):
        return col
    joined, present, mask = col
    out = np.empty(n, dtype=object)  # None everywhere to begin with
    if present:
        parts = joined.split(_SEP)
        if mask is None:
            out[:] = parts
        else:
            out[~mask] = parts
    return out
