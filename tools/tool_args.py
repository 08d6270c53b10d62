"""Command-line helpers shared by the tools: argparse types that refuse a bad
value while the arguments are parsed (before any training or writing), the
--help description, and `run`, which ends an expected failure (no MNIST, a
malformed file, a missing path) in one error line instead of a traceback.
A library for the tools: run alone, it prints this.
"""

import argparse
import os
import sys


# The tfdc command line's own argparse types (one home; imported when
# called: tfmot_pipeline.py and aeq_recipes.py run without tfdc).
def _float(text):
    from tfdc.cli import _float
    return _float(text)


def positive_int(text):
    """An int >= 1 (epochs, runs, repeats, threads)."""
    from tfdc.cli import _at_least
    return _at_least(1)(text)


def nonnegative_int(text):
    """An int >= 0 (0 often means "none" or "all")."""
    from tfdc.cli import _at_least
    return _at_least(0)(text)


def fraction(text):
    """A float in [0, 1): a sparsity (1 would remove every weight)."""
    from tfdc.cli import _sparsity_value
    return _sparsity_value(text)


def nonnegative_float(text):
    """A float >= 0 (a budget)."""
    value = _float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction_list(text):
    """Comma-separated fractions in [0, 1), as a list of floats."""
    items = text.split(",")
    if "" in items:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return [fraction(item) for item in items]


def positive_float(text):
    """A float > 0 (a learning rate)."""
    value = _float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def open_fraction(text):
    """A float in (0, 1] (a share of the training)."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def epoch_list(count):
    """An argparse type: `count` comma-separated ints >= 0 (epochs per stage)."""
    def parse(text):
        items = text.split(",")
        if len(items) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated epoch counts, "
                                             f"got {text!r}")
        return [nonnegative_int(item) for item in items]
    parse.__name__ = "epoch_list"
    return parse


def comma_list(choices):
    """An argparse type: comma-separated names, each one of `choices`, as a list."""
    def parse(text):
        names = text.split(",")
        for name in names:
            if name not in choices:
                what = "empty name" if not name else f"unknown name {name!r}"
                raise argparse.ArgumentTypeError(
                    f"{what} in {text!r}: expected comma-separated names from "
                    f"{', '.join(choices)}")
        return names
    parse.__name__ = "comma_list"
    return parse


# The tools' own output folder (gitignored): made on demand, so that a
# command docs/BENCHMARKS.md records (`--json out/pack_rows.json`) runs on a
# fresh clone.
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out")


def existing_dir_for(text):
    """An output file path whose folder exists (or is the repository's
    `out/`, made here): checked before the work that fills it (a missing
    folder was found only when the file was written)."""
    folder = os.path.dirname(os.path.abspath(text))
    if folder == OUT:
        os.makedirs(OUT, exist_ok=True)
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist, got {text!r}")
    return text


def tflite_file(text):
    """An existing .tflite file (plain or packed): the FlatBuffer file
    identifier TFL3 at bytes 4..8, checked before any work on it."""
    try:
        with open(text, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {e.strerror}") from None
    if head[4:8] != b"TFL3":
        raise argparse.ArgumentTypeError(f"{text!r} is not a .tflite file (no TFL3 identifier)")
    return text


def description(doc):
    """The first paragraph of a module docstring, whole: --help's description
    (its first line alone cut sentences in two)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def run(main):
    """Call `main` and exit with its return value; a missing or unusable
    MNIST, a malformed file or a missing path ends in one line
    `<tool>: error: <message>` with exit status 2, as argparse's errors do."""
    from tfdc.errors import DatasetUnavailableError, FormatError
    try:
        status = main()
    except (DatasetUnavailableError, FormatError, OSError) as e:
        message = " ".join(str(e).split("\n"))
        print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status)


if __name__ == "__main__":
    print(__doc__)
