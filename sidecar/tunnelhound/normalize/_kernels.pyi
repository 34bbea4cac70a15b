# Types of the C extension built from native/kernels.c.
from typing import Any

import numpy as np

STR: int
I64: int
U64: int
PICK: int
IPV4: int
IPV6: int
ISO: int
JSON: int
HEX: int
B64: int
ROWS: int
SPAN: int
BLOCK: int
BYTES: int
TEXT: int
XXH3_128: int
XXH3_128_DIGEST: int

def render(
    parts: list[Any], n: int, mode: int, into: bytearray = ..., start: int = ..., stop: int = ..., /
) -> Any: ...
def community_ids(
    n: int,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    ok: np.ndarray,
    src: np.ndarray,
    src_v6: np.ndarray,
    dst: np.ndarray,
    dst_v6: np.ndarray,
    seed: int,
    raw: bool = ...,
    /,
) -> Any: ...
def flow_ids(
    n: int,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    ok: np.ndarray,
    src: np.ndarray,
    src_v6: np.ndarray,
    dst: np.ndarray,
    dst_v6: np.ndarray,
    raw: bool = ...,
    /,
) -> Any: ...
def count_newlines(data: bytes | bytearray | memoryview, /) -> int: ...
