"""Merging the sets of one template (normalize/group.py)."""

from __future__ import annotations

import numpy as np

from replay import DATA
from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import FlowBatch
from tunnelhound.normalize.group import merge_batches
from tunnelhound.sources.files import iter_replay


def lab_batches(name: str) -> list[FlowBatch]:
    decoder = Decoder()
    return [b for dg in iter_replay([str(DATA / "lab" / name)]) for b in decoder.decode(dg).flows]


def test_finished_batches_merge_by_their_records_into_the_same_columns() -> None:
    for name in ("netflow_v9.pcap", "ipfix.pcap"):
        fresh, finished = lab_batches(name), lab_batches(name)
        concatenated = {}
        for batch in finished:
            for column, values in batch.columns.items():  # finished, as the decode stage does
                concatenated.setdefault((batch.template_id, column), []).append(values)
        got, want = merge_batches(finished), merge_batches(fresh)
        assert len(got) == len(want) > 0
        for (a, a_headers), (b, b_headers) in zip(got, want, strict=True):
            assert a.raw is not None and a.count == b.count  # joined records, not columns
            assert list(a.columns) == list(b.columns)
            for column, values in a.columns.items():
                assert values.dtype == b.columns[column].dtype
                assert np.array_equal(values, b.columns[column])
                assert np.array_equal(values, np.concatenate(concatenated[(a.template_id, column)]))
            assert np.array_equal(a_headers.index, b_headers.index)
