"""Where a running server spends its Python time: py-spy samples, summarised as Markdown.

py-spy (PyPI `py-spy`, a binary wheel) samples a process from outside, without changing it.
Only the thread holding the GIL is sampled (`--gil`): the Python work that competes for the
core. Idle threads (thread pools, the event loop waiting in epoll) and gRPC's C core, which runs
without the GIL, are left out. Each sample counts once for its innermost function ("self") and
once for every function on its stack ("inclusive", listed for Pantree's own functions); lines of
a function are merged.

    python bench/pyspy.py --pid PID --seconds 10      # print both tables
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_OWN = re.compile(r"\((pantree_common|services)/")


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> None:
    """Sample `pid` (and its child processes) for `seconds` into py-spy's raw (collapsed
    stacks) format."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(round(seconds))]
    command += ["--rate", str(rate), "--gil", "--subprocesses", "--nonblocking"]
    subprocess.run(
        [*command, "--format", "raw", "--output", str(output)], check=True, capture_output=True
    )


def summarise(raw: Path, top: int = 15) -> str:
    """Markdown: the functions with the most samples, inclusive and self."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = [
            _LINE.sub(")", frame)
            for frame in stack.split(";")
            if not frame.startswith(("process ", "thread "))  # --subprocesses names the process
        ]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        # What runs the event loop (the entry point, serve_mesh) contains every sample of it.
        loop = next((i for i, frame in enumerate(frames) if "(asyncio/" in frame), 0)
        for frame in set(frames[loop:]):
            inclusive[frame] += samples
    if not total:
        return "(no samples)\n"
    # Pantree's own functions: the event loop, thread pools and entry points around them say
    # nothing; library time shows under "self" and inside the Pantree function that called it.
    shown = [(f, n) for f, n in inclusive.most_common() if _OWN.search(f)][:top]
    rows = ["| Pantree function (file) | inclusive | self |", "|---|---|---|"]
    rows += [f"| `{f}` | {n / total:.1%} | {own[f] / total:.1%} |" for f, n in shown]
    rows += ["", "| most self time: function (file) | self |", "|---|---|"]
    rows += [f"| `{f}` | {n / total:.1%} |" for f, n in own.most_common(top)]
    return f"{total:,} samples.\n\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=Path("pyspy.txt"))
    args = parser.parse_args()
    record(args.pid, args.seconds, args.output)
    print(summarise(args.output))


if __name__ == "__main__":
    main()
