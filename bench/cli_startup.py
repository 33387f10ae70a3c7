"""Start-up time of the ``longshore`` command: wall time of a few commands, each run in a
fresh interpreter, for one or more source trees, interleaved so that a busy machine slows
every tree alike. Prints JSON (median and quartiles in milliseconds per command and tree).

``jobs list`` is a client command run up to its request, which is refused (nothing listens on
port 9): the time to load the HTTP client and the settings, without a server's answer.

Run: ``python -m bench.cli_startup [--runs 15] [--tree before=/path/a --tree after=/path/b]``
(default: the current directory as the only tree). ``tasks stats`` uses the embedded store
in a fresh temporary ``WORKER_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS: dict[str, list[str]] = {
    "import service.cli": ["-c", "import service.cli"],
    "longshore --help": ["-c", "from service.cli import main; main()", "--help"],
    "longshore jobs --help": ["-c", "from service.cli import main; main()", "jobs", "--help"],
    "longshore tasks stats": ["-c", "from service.cli import main; main()", "tasks", "stats"],
    # A client command up to its first request (refused: nothing listens on port 9).
    "longshore jobs list": [
        "-c",
        "from service.cli import main; main()",
        "jobs",
        "--url",
        "http://127.0.0.1:9",
        "list",
    ],
}


def run_once(tree: str, args: list[str], data_dir: str) -> float:
    env = dict(os.environ, PYTHONPATH=tree, WORKER_DATA_DIR=data_dir)
    env.pop("WORKER_DATABASE_URL", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, cwd=tree, check=False
    )
    if done.returncode != 0 and "cannot reach the admin API" not in done.stderr:
        raise SystemExit(f"{args}: exit status {done.returncode}: {done.stderr.strip()}")
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(samples, n=4)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "q1_ms": round(quartiles[0], 1),
        "q3_ms": round(quartiles[2], 1),
        "min_ms": round(min(samples), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree) or {"current": os.getcwd()}
    samples: dict[str, dict[str, list[float]]] = {
        command: {name: [] for name in trees} for command in COMMANDS
    }
    with tempfile.TemporaryDirectory() as scratch:
        data_dirs = {name: os.path.join(scratch, name) for name in trees}
        for path in data_dirs.values():
            os.mkdir(path, 0o700)
        for name, tree in trees.items():  # warm the byte-code caches and create the stores
            for command_args in COMMANDS.values():
                run_once(tree, command_args, data_dirs[name])
        for _ in range(args.runs):
            for command, command_args in COMMANDS.items():
                for name, tree in trees.items():
                    samples[command][name].append(run_once(tree, command_args, data_dirs[name]))
    results = {
        command: {name: summary(values) for name, values in per_tree.items()}
        for command, per_tree in samples.items()
    }
    print(json.dumps({"runs": args.runs, "load": os.getloadavg(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
