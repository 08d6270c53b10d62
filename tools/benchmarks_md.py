"""Write one benchmark's results into docs/BENCHMARKS.md.

Each tool owns a section between `<!-- BEGIN name -->` and `<!-- END name -->`
markers, so tools can be re-run independently without clobbering each other.
A library for the tools: run alone, it prints this.
"""

import datetime
import os
import platform
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "docs", "BENCHMARKS.md")
HEADER = ("# Benchmarks\n\nEvery number below was produced by the command shown with it, on the "
          "machine described. Re-run a command to refresh its section.\n")


def command_line():
    """The command that is running now, as a user would type it."""
    argv = [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def write_section(name, title, body, command=None):
    """Replace (or append) section `name` of docs/BENCHMARKS.md atomically."""
    command = command or command_line()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    begin, end = _markers(name)
    block = (f"{begin}\n## {title}\n\n"
             f"Command: `{command}`  \nRun: {stamp} on {machine}\n\n{body.strip()}\n"
             f"{end}\n")
    text = open(PATH, encoding="utf-8").read() if os.path.exists(PATH) else HEADER
    # A damaged marker made the pattern miss: a second BEGIN block was
    # appended, and the next run replaced everything between two sections.
    counts = text.count(begin), text.count(end)
    if counts != (0, 0) and not (counts == (1, 1) and text.index(begin) < text.index(end)):
        sys.exit(f"{os.path.basename(sys.argv[0])}: {PATH}: section {name!r} has "
                 f"{counts[0]} '{begin}' and {counts[1]} '{end}' (expected one of each, BEGIN "
                 "first): repair the markers; the file is left as it is")
    pattern = re.compile(_pattern(name) + "\n?", re.S)
    text = pattern.sub(lambda m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    tmp = PATH + ".tmp"
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, PATH)


def section(name):
    """The current text of section `name` of docs/BENCHMARKS.md ("" if none)."""
    text = open(PATH, encoding="utf-8").read() if os.path.exists(PATH) else ""
    match = re.search(_pattern(name), text, re.S)
    return match.group(0) if match else ""


def _markers(name):
    """The lines that open and close section `name`."""
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def _pattern(name):
    """A regular expression of section `name`, its markers included."""
    begin, end = _markers(name)
    return f"{re.escape(begin)}.*?{re.escape(end)}"


def add_no_write(parser):
    """The --no-write option of a tool that writes a section (`publish`)."""
    parser.add_argument("--no-write", action="store_true",
                        help="print the section only; leave docs/BENCHMARKS.md as it is")


def publish(args, name, title, body, command=None, partial=None):
    """The section printed, then written with `write_section`, unless
    --no-write (`add_no_write`: a tool run to check it leaves the docs as
    they are) or `partial`, what a run of some of the section's rows lacks
    ("rows best, lenet5"): written, the section would have lost them (a
    run of one row replaced nine)."""
    why = ("--no-write" if getattr(args, "no_write", False) else
           f"this run lacks {partial}, which the section holds" if partial else None)
    print(f"## {title}" + (f" ({why}: docs/BENCHMARKS.md left as it is)" if why else "")
          + f"\n\n{body.strip()}")
    if why is None:
        write_section(name, title, body, command)


def nothing_to_write(where, how):
    """Stop a tool that was asked to re-render its section but found no saved
    results in `where` (`how`: the command that makes them): it replaced its
    section with an empty one and exited 0."""
    sys.exit(f"{os.path.basename(sys.argv[0])}: no saved results in {where}: {how}; "
             "docs/BENCHMARKS.md left as it is")


def markdown_table(headers, rows):
    """A Markdown table from a header list and rows of cells."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    print(__doc__)
