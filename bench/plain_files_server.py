"""The files service with a pass-through segment codec: the same process, routes, RLS
transactions, hashing, storage and streaming, with the segments stored in the clear. Only
`bench/files_transfer.py` runs it, as the baseline that isolates what encryption costs."""

from __future__ import annotations

from functools import partial

from argus_files.app import SERVICE, create_app
from argus_files.segments import Codec, Opener, Sealer
from argus_shared import runner


class PlainSealer(Sealer):
    def _seal(self, plaintext: bytes | memoryview, last: bool) -> bytes:
        self.index += 1
        return bytes(plaintext)


class PlainOpener(Opener):
    tag = 0

    def open(self, index: int, sealed: bytes | memoryview) -> bytes:
        return bytes(sealed)


if __name__ == "__main__":
    runner.main(SERVICE, partial(create_app, codec=Codec(PlainSealer, PlainOpener)))
