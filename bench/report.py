"""Results sections for docs/BENCHMARKS.md: a dated title, the machine, the command, the tables.

Also a wrapper, so a benchmark that prints Markdown needs no writer of its own: it runs the
command, echoes its output and appends it as one section.

    python bench/report.py --title "Vector search" --write docs/BENCHMARKS.md -- \
        python bench/vector_search.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
from pathlib import Path


def machine() -> str:
    """Cores, CPU model, Python and grpcio: what makes figures of two runs comparable."""
    import grpc  # noqa: PLC0415  (only the machine line needs it)

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {cpu}, load average {load} at the start; "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}"
    )


def section(title: str, command: str, body: str, machine_line: str = "") -> str:
    """One dated results section; `machine_line` as machine() said before the run."""
    return (
        f"### {title} — {dt.date.today().isoformat()}\n\n"
        f"Machine: {machine_line or machine()}.\n"
        f"Command: `{command}`\n\n{body.strip()}\n"
    )


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("\n" + text)


def shown_command(argv: list[str]) -> str:
    """A command as the doc shows it: the virtualenv's interpreter written as `python`."""
    words = ["python" if Path(word).name.startswith("python") else word for word in argv]
    return shlex.join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", required=True)
    parser.add_argument("--write", type=Path, help="append the section to this Markdown file")
    parser.add_argument(
        "--from", dest="start", help="record the output from the last line matching this regex"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    before = machine()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as running:
        assert running.stdout is not None
        for line in running.stdout:  # shown as it comes: some benchmarks run for minutes
            print(line, end="", flush=True)
            lines.append(line)
    if running.returncode:
        raise SystemExit(f"{shown_command(command)} exited with {running.returncode}")
    if args.start:  # a benchmark that shows rows as they come, then the whole table
        starts = [i for i, line in enumerate(lines) if re.search(args.start, line)]
        lines = lines[starts[-1] :] if starts else lines
    if args.write:
        append(args.write, section(args.title, shown_command(command), "".join(lines), before))


if __name__ == "__main__":
    main()
