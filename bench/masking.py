"""Output masking throughput: how fast :class:`jobrunner.masking.OutputMasker` passes a run's
output through, in chunks of the size the engine delivers, with no secret, a few short
secrets, and one secret of the largest size (64 KiB). Prints JSON.

Run: ``python -m bench.masking [--megabytes 64] [--chunk 4096]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from jobrunner.masking import OutputMasker


def measure(values: list[bytes], output: bytes, chunk: int) -> dict[str, float]:
    masker = OutputMasker(values)
    started = time.perf_counter()
    shown = 0
    for offset in range(0, len(output), chunk):
        shown += len(masker.feed(output[offset : offset + chunk]))
    shown += len(masker.flush())
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 4), "mb_per_second": round(len(output) / seconds / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=4096)
    args = parser.parse_args()
    line = b"2026-12-07T05:00:00Z INFO processed row 12345 of table orders: ok\n"
    output = line * (args.megabytes * 1_000_000 // len(line))
    cases = {
        "none": [],
        "three_short": [os.urandom(12).hex().encode() for _ in range(3)],
        "one_64k": [os.urandom(32 * 1024).hex().encode()],
    }
    results = {name: measure(values, output, args.chunk) for name, values in cases.items()}
    print(json.dumps({"bytes": len(output), "chunk": args.chunk, "results": results}, indent=2))


if __name__ == "__main__":
    main()
