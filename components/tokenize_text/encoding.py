"""Worker-side text handling for the tokenization component: decoding bytes, cutting documents into
pieces that encode exactly as the whole, and writing shard records quickly.

This module (like `beam_ops` and `sources`) deliberately imports neither TensorFlow nor TFX: Beam
workers import it to unpickle the DoFns, and on this project's machines `import tensorflow` alone
costs about 12 seconds per worker process.
"""

from __future__ import annotations

import codecs
import struct
from typing import Iterable, Iterator, Optional

import google_crc32c
import numpy as np

from core import shards

# Unicode policy: bytes that are not UTF-8 are decoded with errors="replace" (each invalid sequence
# becomes U+FFFD, as Python's "replace" does) and the document is counted as affected. A document
# that is not UTF-8 text at all is refused unless the accept_invalid_text setting is on: one that
# starts with a UTF-16/UTF-32 byte-order mark, holds a NUL byte anywhere, or in any 64 KiB of it
# (POLICY_WINDOW, counted from its start) has more than 1% of its bytes in invalid UTF-8 sequences or
# control characters. Files are checked on their first 64 KiB before any work (text_file_problem),
# and every document in full while it is read for tokenizing (TextCheck, inside Utf8Decoder). A
# UTF-8 byte-order mark is dropped; CRLF line ends become LF unless keep_crlf.
UTF8_POLICY = "replace"
POLICY_WINDOW = 1 << 16  # the text policy judges a document this many bytes at a time
TEXT_CHECK_BYTES = POLICY_WINDOW  # how much of each text file is looked at before tokenizing
MAX_INVALID_FRACTION = 0.01  # of a window's bytes, the share in invalid UTF-8 or control characters
# C0 control characters other than tab, line feed, vertical tab, form feed and carriage return (the
# whitespace of GPT-2's pre-tokenizer), and DEL: in a text they are binary data. Every byte of them is
# one character: UTF-8 never uses bytes below 0x80 inside a longer sequence.
CONTROL_BYTES = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x20)) + b"\x7f"
REPLACEMENT = "\ufffd"
BOM = "\ufeff"
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                 (b"\xfe\xff", "UTF-16"))


class TextCheck:
    """The text policy over one document's bytes as they are read, a window at a time: what it finds
    (NUL bytes, control characters, invalid sequences replaced) and the first reason it refuses the
    document (`problem`, None while it is text)."""

    def __init__(self):
        self.nul_bytes = self.control_characters = self.replaced_sequences = 0
        self.problem: Optional[str] = None
        self._offset = 0  # bytes seen
        self._window_bad = [0, 0]  # invalid sequences and control characters of the current window

    def room(self) -> int:
        """How many more bytes the current window takes: add() takes at most this many at once."""
        return POLICY_WINDOW - self._offset % POLICY_WINDOW

    def add(self, raw: bytes, replaced: int = 0) -> None:
        """The document's next bytes (within one window), of which decoding replaced `replaced`
        invalid sequences."""
        if self._offset == 0:
            for bom, name in _FOREIGN_BOMS:
                if raw.startswith(bom):
                    self._refuse(f"it is {name} text (it starts with a {name} byte-order mark), not UTF-8")
        nul = raw.find(0)
        if nul >= 0 and not self.nul_bytes:
            self._refuse(f"it holds NUL bytes (binary data, or UTF-16/UTF-32 text), the first at byte "
                         f"{self._offset + nul}")
        control = len(raw) - len(raw.translate(None, CONTROL_BYTES))
        self.nul_bytes += raw.count(0) if nul >= 0 else 0
        self.control_characters += control
        self.replaced_sequences += replaced
        self._window_bad[0] += replaced
        self._window_bad[1] += control
        self._offset += len(raw)
        if self._offset % POLICY_WINDOW == 0:
            self._judge_window(POLICY_WINDOW)

    def finish(self) -> None:
        """The document ended: its last, partial window is judged as a whole window (a short tail
        with a stray byte or two is not refused), unless the document is shorter than one."""
        if self._offset % POLICY_WINDOW:
            self._judge_window(min(self._offset, POLICY_WINDOW))

    def _judge_window(self, size: int) -> None:
        replaced, control = self._window_bad
        self._window_bad = [0, 0]
        if replaced + control > size * MAX_INVALID_FRACTION:
            start = (self._offset - 1) // POLICY_WINDOW * POLICY_WINDOW
            found = " and ".join(f"{n} {what}" for n, what in ((replaced, "invalid UTF-8 sequences"),
                                                              (control, "control characters")) if n)
            self._refuse(f"{found} in its bytes {start}-{self._offset}, more than {MAX_INVALID_FRACTION:.0%} "
                         f"(another encoding, or binary data)")

    def _refuse(self, problem: str) -> None:
        self.problem = self.problem or problem

    def check_text(self, text: str) -> None:
        """A document that came as text (a dataset's string cell): its UTF-8 bytes checked whole."""
        raw = text.encode("utf-8", "surrogatepass")
        start = 0
        while start < len(raw):
            end = start + self.room()
            self.add(raw[start:end])
            start = end
        self.finish()


def text_file_problem(head: bytes) -> Optional[str]:
    """Why the first bytes of a file show it is not UTF-8 text (None: they look like it)."""
    check = TextCheck()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    start = 0
    while start < len(head):
        end = start + check.room()
        raw = head[start:end]
        check.add(raw, _replaced(decoder.decode(raw, final=False), raw))
        start = end
    check.finish()
    return check.problem


def _replaced(text: str, raw: bytes) -> int:
    """The invalid sequences that decoding `raw` under "replace" turned into `text`'s U+FFFD (a
    U+FFFD that was in the text itself is not one)."""
    return text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())

# Characters at which a document may be cut for GPT-2 BPE (see `bpe_pieces`). All are whitespace to
# GPT-2's pre-tokenizer regex; other Python whitespace (e.g. \x1c-\x1f) is not, so it is not used.
_CUT_CHARS = ("\n", " ", "\t", "\r")


class Utf8Decoder:
    """Incremental UTF-8 decoding of one document's byte blocks under the replace policy, dropping
    a leading byte-order mark and turning CRLF into LF (unless keep_crlf); its TextCheck (`check`)
    sees every byte on the way, so the text policy holds for the whole document without a second read.

    Decodes strictly first so that it can tell whether the document had invalid bytes (a literal
    U+FFFD in valid text must not count); on the first error it switches to "replace".
    """

    def __init__(self, keep_crlf: bool = False):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._keep_crlf = keep_crlf
        self._started = False
        self._held_cr = ""  # a block's last "\r", held back until the next block tells if "\n" follows
        self.replaced = False
        self.bom_dropped = False
        self.crlf_normalized = 0
        self.check = TextCheck()

    def counts(self) -> dict:
        """What decoding replaced, normalised or refused, as TokenizeText's counters."""
        return {"invalid_utf8_documents": int(self.replaced), "bom_dropped_documents": int(self.bom_dropped),
                "crlf_normalized_lines": self.crlf_normalized, "refused_documents": int(bool(self.check.problem))}

    def decode(self, block: bytes, final: bool = False) -> str:
        # decoded a policy window's worth at a time, so that the check knows where each replacement was
        parts, start = [], 0
        while start < len(block):
            end = start + self.check.room()
            parts.append(self._decode(block[start:end], final=final and end >= len(block)))
            start = end
        if not block:
            parts.append(self._decode(block, final))
        if final:
            self.check.finish()
        text = "".join(parts)
        if not self._started and text:
            self._started = True
            if text.startswith(BOM):
                text, self.bom_dropped = text[1:], True
        if self._keep_crlf:
            return text
        text = self._held_cr + text
        self._held_cr = ""
        if text.endswith("\r") and not final:
            text, self._held_cr = text[:-1], "\r"
        count = text.count("\r\n")
        if count:
            self.crlf_normalized += count
            text = text.replace("\r\n", "\n")
        return text

    def _decode(self, raw: bytes, final: bool) -> str:
        if not self.replaced:
            try:
                text = self._decoder.decode(raw, final)
                self.check.add(raw)
                return text
            except UnicodeDecodeError:
                # The codec keeps its buffered bytes when it raises, so the bytes can be decoded again.
                self.replaced = True
                self._decoder.errors = UTF8_POLICY
        text = self._decoder.decode(raw, final)
        self.check.add(raw, _replaced(text, raw))
        return text


def is_safe_cut(text: str, i: int) -> bool:
    """Whether GPT-2 BPE encodes text[:i] + text[i:] exactly as text.

    A cut at i is safe when text[i] is one of _CUT_CHARS and text[i-1] is not whitespace. Then no
    pre-token of GPT-2's regex spans i (every alternative is either a whitespace run or a run that
    excludes whitespace after an optional leading space), the regex has no look-behind, and its only
    look-ahead (`\\s+(?!\\S)`) never looks past text[i-1]; so the pre-tokens, and hence the BPE
    tokens, of text[:i] and text[i:] are exactly those of the whole.
    """
    return 0 < i < len(text) and text[i] in _CUT_CHARS and not text[i - 1].isspace()


def _last_safe_cut(text: str, limit: int) -> int:
    """The largest i in (0, limit] with is_safe_cut(text, i), or 0 when there is none."""
    best = 0
    for ch in _CUT_CHARS:
        i = text.rfind(ch, 1, limit + 1)
        while i > best and text[i - 1].isspace():
            i = text.rfind(ch, 1, i)
        best = max(best, i)
    return best


def bpe_pieces(blocks: Iterable[str], max_chars: int) -> Iterator[str]:
    """Re-cut a document's text blocks into pieces of at most about `max_chars` characters whose
    separate BPE encodings concatenate to the encoding of the whole document.

    Memory stays at a few pieces whatever the document's length. A stretch longer than max_chars
    without a safe cut (no whitespace at all) is kept whole rather than cut unsafely.
    """
    buf = ""
    for block in blocks:
        buf += block
        while len(buf) > max_chars:
            cut = _last_safe_cut(buf, max_chars)
            if cut == 0:
                cut = _first_safe_cut(buf, max_chars)
                if cut == 0:
                    break  # wait for more text
            yield buf[:cut]
            buf = buf[cut:]
    if buf:
        yield buf


def _first_safe_cut(text: str, start: int) -> int:
    for i in range(max(start, 1), len(text)):
        if is_safe_cut(text, i):
            return i
    return 0


def char_pieces(blocks: Iterable[str], chunk_size: int) -> Iterator[str]:
    """Re-cut text blocks into consecutive pieces of exactly chunk_size characters (the last may be
    shorter): the `text` records of the character path."""
    buf = ""
    for block in blocks:
        buf += block
        if len(buf) >= chunk_size:
            full = len(buf) - len(buf) % chunk_size
            for start in range(0, full, chunk_size):
                yield buf[start:start + chunk_size]
            buf = buf[full:]
    if buf:
        yield buf


class TokenChunker:
    """Collects one document's tokens piece by piece and yields `core.shards`-sized chunks with
    consecutive positions, so that pieces of any length give the records a whole document would."""

    def __init__(self, chunk_size: int):
        self.chunk_size = chunk_size
        self._pending = np.zeros([0], np.int64)
        self._pos = 0
        self.num_tokens = 0

    def add(self, tokens) -> Iterator[tuple]:
        tokens = np.asarray(tokens, dtype=np.int64)
        self.num_tokens += len(tokens)
        pending = np.concatenate([self._pending, tokens]) if len(self._pending) else tokens
        full = len(pending) - len(pending) % self.chunk_size
        for start in range(0, full, self.chunk_size):
            yield self._emit(pending[start:start + self.chunk_size])
        self._pending = pending[full:]

    def finish(self) -> Iterator[tuple]:
        if len(self._pending):
            yield self._emit(self._pending)
            self._pending = np.zeros([0], np.int64)

    def _emit(self, chunk):
        pos = self._pos
        self._pos += 1
        return pos, chunk


# --- tf.train.Example records without TensorFlow -------------------------------------------------
# The bytes are the protobuf encoding of exactly the Example that `core.shards.serialize_chunk`
# builds (executor tests parse both and compare); writing them directly keeps TensorFlow out of the
# workers and costs a few numpy passes per record instead of a per-token Python loop.


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]  # the varints of 0-127, most lengths and every tag here


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if n < 0:
        n += 1 << 64  # protobuf encodes negative int64 as ten-byte two's complement
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _packed_varints(values: np.ndarray) -> bytes:
    """Protobuf's packed varints of int64 values. Values in [0, 2**21) (GPT-2 and character ids)
    take at most three bytes each and are encoded with a few array operations, not a loop."""
    if len(values) == 0:
        return b""
    if values.min() < 0 or values.max() >= 1 << 21:
        return b"".join(_varint(int(v)) for v in values)
    v = values.astype(np.uint32, copy=False)
    two, three = v >= 1 << 7, v >= 1 << 14  # which values need a second, a third byte
    out = np.empty((len(v), 3), np.uint8)
    out[:, 0] = (v & 0x7F) | (two.view(np.uint8) << 7)  # the high bit: another byte follows
    out[:, 1] = ((v >> 7) & 0x7F) | (three.view(np.uint8) << 7)
    out[:, 2] = v >> 14
    used = np.empty((len(v), 3), bool)
    used[:, 0], used[:, 1], used[:, 2] = True, two, three
    return out[used].tobytes()


def _len_field(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _int64_feature(values: np.ndarray) -> bytes:
    return _len_field(3, _len_field(1, _packed_varints(values)))  # Feature.int64_list.value


def _int64_scalar_feature(value: int) -> bytes:
    """_int64_feature of one value, without numpy's per-call cost (a record's doc and pos)."""
    return _len_field(3, _len_field(1, _varint(int(value))))


def _bytes_feature(value: bytes) -> bytes:
    return _len_field(1, _len_field(1, value))  # Feature.bytes_list.value


def _example(features: dict) -> bytes:
    entries = b"".join(_len_field(1, _len_field(1, key.encode()) + _len_field(2, feature))
                       for key, feature in features.items())
    return _len_field(1, entries)  # Example.features.feature (a map: repeated key/value entries)


def token_record(doc: int, pos: int, tokens: np.ndarray) -> bytes:
    """A `core.shards` record: features tokens, doc, pos."""
    return _example({
        shards.TOKENS: _int64_feature(np.asarray(tokens)),
        shards.DOC: _int64_scalar_feature(doc),
        shards.POS: _int64_scalar_feature(pos),
    })


TEXT = "text"  # the character records' feature, which components/char_transform.py reads


def text_record(doc: int, pos: int, text: str) -> bytes:
    """The character path's record: the same doc/pos keys, with a chunk of the document's text in
    `text` (UTF-8) that the Transform module turns into `tokens`."""
    return _example({
        TEXT: _bytes_feature(text.encode("utf-8")),
        shards.DOC: _int64_scalar_feature(doc),
        shards.POS: _int64_scalar_feature(pos),
    })


def decode_text(value, decoder: Optional[Utf8Decoder] = None) -> str:
    """A dataset cell as text: str as is (checked by the decoder's text policy), bytes under the UTF-8
    policy."""
    decoder = decoder or Utf8Decoder()
    if isinstance(value, str):
        decoder.check.check_text(value)
        return value
    return decoder.decode(bytes(value), final=True)


def tfrecord(value: bytes) -> bytes:
    """One record framed as TFRecord files hold it: length, masked CRC-32C of the length, data,
    masked CRC-32C of the data."""
    length = struct.pack("<Q", len(value))
    return length + struct.pack("<I", _masked_crc32c(length)) + value + struct.pack("<I", _masked_crc32c(value))


def _masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
