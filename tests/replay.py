"""Run captures through decode and normalize (test helper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunnelhound.decode.decoder import Decoder
from tunnelhound.model import Datagram
from tunnelhound.normalize.biflow import BiflowStitcher
from tunnelhound.normalize.ecs import Normalizer
from tunnelhound.normalize.frame import FlowFrame
from tunnelhound.sources.files import iter_replay

DATA = Path(__file__).resolve().parent / "data"


def documents(paths: list[Path], *, stitch: bool = False, fast_path: bool = True) -> list[dict[str, Any]]:
    """ECS documents for captures or .dat files replayed in order from one decoder."""
    decoder = Decoder(fast_path=fast_path)
    normalizer = Normalizer()
    frames = [normalizer.frames(decoder.decode(dg).flows) for dg in iter_replay([str(p) for p in paths])]
    frame = FlowFrame.concat(frames)
    if stitch:
        stitcher = BiflowStitcher()
        frame = FlowFrame.concat([stitcher.push(frame), stitcher.flush()])
    return frame.documents()


def dat_documents(files: list[str], exporter: tuple[str, int] = ("192.0.2.1", 4444)) -> list[dict[str, Any]]:
    """Documents for vendor .dat files, one datagram each."""
    decoder = Decoder()
    normalizer = Normalizer()
    docs: list[dict[str, Any]] = []
    for i, name in enumerate(files):
        data = (DATA / "vendors" / "dat" / name).read_bytes()
        for batch in decoder.decode(Datagram(data, exporter[0], exporter[1], float(i))).flows:
            docs.extend(normalizer.normalize(batch))
    return docs
