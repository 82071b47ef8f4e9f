"""The recogniser's own process: ``python -m labkit.audio.asr_worker``.

Protocol on stdin/stdout: the parent writes an 8-byte header (sample rate, byte count, both
little-endian uint32) and that many bytes of PCM16 mono; the worker answers with one UTF-8 line,
the transcript. It exits when stdin closes.
"""

from __future__ import annotations

import struct
import sys

import numpy as np


def main() -> None:
    from ._sphinx import recognise

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        rate, size = struct.unpack("<II", header)
        pcm = stdin.read(size)
        text = recognise(np.frombuffer(pcm, dtype="<i2"), rate)
        stdout.write(text.replace("\n", " ").encode("utf-8") + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
