"""The `tfdc` command line: `tfdc demo | compress | pack | inspect | decode | bench`.

    tfdc demo [--quick]            train LeNet on MNIST, tfdc.compress it to a
              [--target-bytes N |  budget (default: float32 / 64) or with hand-set
               --max-error-increase P [--confidence C]]   settings; verify in LiteRT
              [--sparsity S --bits B]
    tfdc compress MODEL DATA OUT   tfdc.compress a trained .keras model on the
              (--target-bytes N |  arrays of an .npz to a budget; writes the packed
               --max-error-increase P | --max-loss-increase F)   .tflite, reports
                                   its test error (or loss) if DATA has a test split
    tfdc pack IN OUT               pack any existing .tflite (converter, tfmot,
                                   ai-edge-quantizer); never larger than IN
    tfdc inspect FILE [--json]     the per-layer compression report of a .tflite
    tfdc decode IN OUT             a packed .tflite back to a standard .tflite
    tfdc bench FILE                decode time per backend, LiteRT load + latency

User mistakes (a missing or corrupted file, a bad option, no MNIST) end with
one `tfdc: error: ...` message on stderr and exit status 1 (2 for usage
errors, as argparse does); set `TFDC_DEBUG=1` to see the traceback instead.
`tfdc compress` exits with 3 when it wrote OUT but missed the budget.
"""

import argparse
import decimal
import functools
import json
import os
import re
import signal
import statistics
import sys
import time
import warnings

from tfdc.errors import Terminated, forget_signals, note_signal, raise_if_signalled
from tfdc.runtime import MAX_THREADS

EXIT_ERROR = 1
EXIT_BUDGET_MISSED = 3  # compress wrote OUT, the run it kept: not an error's 1

_PROG = "tfdc"


class UserError(Exception):
    """An error to report as one line, without a traceback."""


class UsageError(UserError):
    """Options that do not go together: reported as argparse's own mistakes
    are (exit status 2, pointing at the command's --help)."""


def _catch_termination():
    """Turn SIGINT, SIGTERM and SIGHUP into `KeyboardInterrupt` /
    `Terminated`, noted (`tfdc.errors.note_signal`), where no one else
    handles them (the main thread, the default action). Returns what to
    restore."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}
    caught = {}
    for name, default in (("SIGINT", signal.default_int_handler), ("SIGTERM", signal.SIG_DFL),
                          ("SIGHUP", signal.SIG_DFL)):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) == default:
            caught[signum] = signal.signal(signum, note_signal)
    return caught


# ------------------------------------------------------------------ parsing
def _per_layer(parse_value):
    """An argparse type for one value, `paper`, or `layer=value,...` pairs
    (`0.9` / `fc1=0.92,fc2=0.91` for sparsity, `5` / `conv1=8,fc1=5` for bits)."""
    def parse(text):
        if text == "paper":
            return "paper"
        if "=" in text:
            return {k: parse_value(v) for k, v in _pairs(text)}
        return parse_value(text)
    return parse


def _sparsity_value(text):
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1), got {text}")
    return value


def _bits_range():
    from tfdc.kmeans import BITS_RANGE  # ClusteredFineTuning's range, one home
    return BITS_RANGE


def _bits_value(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    low, high = _bits_range()
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"bits must be in {low}..{high}, got {text}")
    return value


def _pairs(text):
    out = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected layer=value pairs, got {item!r}")
        if key.strip() in dict(out):  # the last one silently won
            raise argparse.ArgumentTypeError(f"layer {key.strip()!r} is given twice")
        out.append((key.strip(), value.strip()))
    return out


def _at_least(minimum, maximum=None):
    """An argparse type for an integer >= `minimum` (and <= `maximum`)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value
    return parse


_BYTE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10 ** 6, "mb": 10 ** 6,
               "mib": 1 << 20, "g": 10 ** 9, "gb": 10 ** 9, "gib": 1 << 30}


def _byte_count(text):
    """An argparse type for a size in bytes >= 1: `20000`, `20_000`, `20KB`
    or `20k` (1,000 B each; `KiB` 1,024), `1.5MB`."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if unit not in _BYTE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 20000, 20KB, "
                                         "1.5MB)")
    # Exact: a float rounded 99999999999999999999999 and overflowed 1e400.
    value = decimal.Decimal(match.group(1).replace("_", "")) * _BYTE_UNITS[unit]
    if value != value.to_integral_value() or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of bytes >= 1, got {text}")
    if value >= 1 << 63:  # a file's size is an off_t
        raise argparse.ArgumentTypeError(f"more bytes than a file can hold: {text}")
    return int(value)


def _seed(text):
    """An argparse type for a random seed: an integer in 0 … 2^32 − 1."""
    value = _at_least(0)(text)
    if value > 2 ** 32 - 1:
        raise argparse.ArgumentTypeError(f"must be in 0..{2 ** 32 - 1}, got {text}")
    return value


def _positive(text):
    """An argparse type for a finite number > 0."""
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _float(text, expected="a number"):
    """`text` as a float, else the argparse error saying what was expected."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {expected}: {text!r}") from None


def _error_points(text):
    """An argparse type for an error increase in percentage points, in
    [0, `tfdc.planner.MAX_ERROR_INCREASE`]."""
    from tfdc.planner import MAX_ERROR_INCREASE
    value = _float(text)
    if not 0 <= value <= MAX_ERROR_INCREASE:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_ERROR_INCREASE}] percentage "
                                         f"points, got {text}")
    return value


def _confidence(text):
    """An argparse type for `tfdc.compress`'s confidence: a number in
    (0, 1), or "none" (the measured increase must be within the budget)."""
    if text.strip().lower() == "none":
        return "none"
    value = _float(text, "a number or 'none'")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1) (e.g. 0.9) or 'none', got {text}")
    return value


def _epochs(text):
    """An argparse type for `tfdc compress --epochs`: N (split 3:1 between
    pruning and clustering, as `tfdc.compress` does) or P,C."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or P,C (pruning, clustering), got {text!r}")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or P,C: {text!r}") from None
    if len(values) == 1:
        if values[0] < 2:
            raise argparse.ArgumentTypeError(f"must be >= 2 (pruning and clustering), got {text}")
        return values[0]
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"pruning and clustering epochs must be >= 1, got {text}")
    return tuple(values)


def _fraction(text):
    """An argparse type for a number in (0, 1)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _gap_alphabet(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 2 <= value <= 32768 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two in 2..32768, got {text}")
    return value


def _block(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"must be in 1..4294967295, got {text}")
    return value


def _regex(text):
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({e})") from None


def _add_pack_parser(sub):
    pack = sub.add_parser(
        "pack", help="pack an existing .tflite file (from any converter or quantizer)",
        description="Pack the weight buffers of an existing plain .tflite model: one made by "
        "the TFLite converter, tfmot (tf_keras), ai-edge-quantizer or any other tool. Each "
        "buffer is entropy-coded when that makes it smaller (codebook, sparse positions, "
        "Huffman); decoding gives back its exact bytes, so the model's outputs are "
        "bit-identical. OUT is never larger than IN: when packing gains nothing, OUT is a "
        "copy of IN. Options are those of tfdc.export_tflite. OUT is written atomically; "
        "load it with tfdc.load_interpreter or turn it back into a plain .tflite with "
        "'tfdc decode'.")
    pack.add_argument("input", metavar="IN", help="a plain .tflite file ('-': standard input)")
    pack.add_argument("output", metavar="OUT", help="where to write the packed .tflite ('-': "
                      "standard output, the summary then on standard error)")
    pack.add_argument("--weights", choices=["float32", "int8"], default="float32",
                      help="float32 (default: every buffer exactly as in IN) or int8: float32 "
                      "kernels clustered (at most 256 distinct values, each shared by several "
                      "weights) become int8 codes with one scale per tensor and a DEQUANTIZE "
                      "op (lossy at int8 resolution)")
    pack.add_argument("--codebook-fp16", action="store_true",
                      help="round every packed float32 weight to float16 and store the "
                      "codebooks as float16 (lossy unless the values are float16 already, as "
                      "ClusteredFineTuning leaves its shared values)")
    pack.add_argument("--gap-alphabet", type=_gap_alphabet, default=None, metavar="G",
                      help="relative-index symbols for sparse tensors, a power of two in "
                      "2..32768 (default: chosen per tensor)")
    pack.add_argument("--block", type=_block, default=None, metavar="N",
                      help="symbols per independently decodable segment, 1..4294967295 "
                      "(default 4096)")
    pack.add_argument("--min-bytes", type=_at_least(0), default=64, metavar="N",
                      help="buffers smaller than N bytes (N >= 0) stay in the flatbuffer "
                      "(default 64)")
    pack.add_argument("--select", type=_regex, default=None, metavar="REGEX",
                      help="pack only the buffers of tensors whose name matches REGEX "
                      "(Python re.search; default: every buffer)")
    pack.add_argument("--strip-debug", action=argparse.BooleanOptionalAction, default=True,
                      help="drop what no runtime reads: activation tensor names, subgraph "
                      "names, the converter's description and CONVERSION_METADATA (default: "
                      "on, as tfdc.export does)")
    pack.add_argument("--negative-zeros", choices=["keep", "zero"], default="keep",
                      help="float weights of -0.0 (a pruning mask multiplied into negative "
                      "weights leaves them, e.g. tfmot's): keep (default: lossless, coded as "
                      "values) or zero: store them as 0.0, equal as numbers, coded as pruned "
                      "positions (a warning says what keeping them costs)")
    pack.add_argument("--report", action="store_true",
                      help="also print the per-layer compression report")
    pack.set_defaults(func=cmd_pack)


def _add_model_and_data(parser, verb, confidence):
    """MODEL, DATA, the budget and the options `tfdc compress` and `tfdc
    plan` share (`verb`: what the command does with the budget;
    `confidence`: whether it takes --confidence)."""
    from tfdc.compressor import DEFAULT_CONFIDENCE
    parser.add_argument("model", metavar="MODEL",
                        help="a trained Keras model file (.keras, as model.save writes it): a "
                        "classifier, or another model compiled with its loss (then "
                        "--target-bytes or --max-loss-increase; a model with several outputs "
                        "too, scored by its weighted compiled losses)")
    parser.add_argument("data", metavar="DATA",
                        help="a NumPy .npz with x_train, y_train, optionally x_val, y_val and "
                        "x_test, y_test, as the model takes them (np.savez(DATA, "
                        "x_train=..., y_train=...)); several inputs or outputs: one array "
                        "each, x_train/0, x_train/1, ... in the model's order, or "
                        "x_train/NAME keyed by name (y_train/..., x_val/... alike)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--target-bytes", type=_byte_count, default=None, metavar="N",
                        help=f"{verb} a packed file of at most N bytes (20000, 20KB, 1.5MB; "
                        "KB = 1000 B, KiB = 1024 B)")
    budget.add_argument("--max-error-increase", type=_error_points, default=None, metavar="P",
                        help=f"{verb} the smallest file whose validation error is at most P "
                        "percentage points above the float model's (e.g. 0.2)")
    budget.add_argument("--max-loss-increase", type=_positive, default=None, metavar="F",
                        help=f"{verb} the smallest file whose validation loss is at most the "
                        "fraction F above the float model's (0.05: 5 %%); for any model with "
                        "a loss, e.g. a regression model (a classifier: --max-error-increase)")
    if confidence:
        parser.add_argument("--confidence", type=_confidence, default=None, metavar="C",
                            help="with --max-error-increase or --max-loss-increase: the "
                            "probability, in (0, 1), that the kept file's true increase is "
                            f"within the budget (default {DEFAULT_CONFIDENCE}), or 'none': "
                            "the measured increase itself")
    parser.add_argument("--validation-split", type=_fraction, default=None, metavar="F",
                        help="without x_val in DATA: hold out the last F of x_train, in (0, "
                        "1) (default 0.1); refused when DATA has x_val")
    parser.add_argument("--safe-mode", action=argparse.BooleanOptionalAction, default=True,
                        help="load MODEL with Keras's safe_mode (default: on); --no-safe-mode "
                        "runs the Python code a Lambda layer stores in it: only for a file "
                        "you trust")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE",
                        help="import MODULE (a module name, or a .py file) before loading "
                        "MODEL: the code of a subclassed model, a custom layer or loss it "
                        "uses (registered with @keras.saving.register_keras_serializable); "
                        "may be repeated")


def _add_compress_parser(sub):
    compress = sub.add_parser(
        "compress", help="compress a trained Keras model (.keras) to a budget: plan, prune, "
        "cluster, pack",
        description="Compress a trained Keras model with tfdc.compress: per-layer sparsity and "
        "bits planned for the budget from a sensitivity scan, pruning with fine-tuning, weight "
        "sharing, and the packed .tflite written to OUT (atomically). The model is trained on "
        "x_train, y_train of DATA and the budget is met on its validation data: x_val, y_val, "
        "else the last --validation-split of x_train (data the model was not trained on, for "
        "an honest budget). If DATA has x_test, y_test, the packed file's test error (or loss) "
        "in LiteRT is printed beside the float model's; they are never used to compress. Exit "
        f"status {EXIT_BUDGET_MISSED} if the budget was not met (OUT then holds the run closest "
        "to it), 1 for an error (nothing written), 2 for a usage mistake.")
    _add_model_and_data(compress, "compress to", confidence=True)
    compress.add_argument("output", metavar="OUT", help="where to write the packed .tflite")
    compress.add_argument("--epochs", type=_epochs, default=None, metavar="N|P,C",
                          help="training epochs: N (split 3:1 between pruning and clustering) "
                          "or P,C (default: about 6,000 + 1,500 steps, within 2 + 1 and 60 + 15 "
                          "epochs)")
    compress.add_argument("--batch-size", type=_at_least(1), default=128, metavar="B",
                          help="training batch size, >= 1 (default 128)")
    compress.add_argument("--distill", action="store_true",
                          help="train against the float model's softened outputs as well "
                          "(tfdc.distill; off by default: it did not help LeNet-300-100)")
    compress.add_argument("--full-integer", action="store_true",
                          help="write a full-integer file (int8 activations and weights, "
                          "codebooks kept) for NPUs and NNAPI, calibrated on 256 examples of "
                          "x_train; the budget is judged on that file")
    compress.add_argument("--seed", type=_seed, default=1234,
                          help="random seed, for a reproducible run (default 1234)")
    compress.add_argument("--report", action="store_true",
                          help="also print the plan and the per-layer compression report")
    compress.set_defaults(func=cmd_compress)


def _add_plan_parser(sub):
    plan = sub.add_parser(
        "plan", help="scan a trained Keras model's sensitivity and plan per-layer settings "
        "for a budget, without training",
        description="The first step of tfdc compress alone, in seconds: the sensitivity scan "
        "(each layer pruned, then clustered, on its own, measured on the validation data "
        "without retraining: the table, and the paper's figure with --plot) and the plan of "
        "per-layer sparsity and bits for the budget (tfdc.plan: the packed file's predicted "
        "bytes, exact for the model as it is, and the predicted loss and error). No training: "
        "an error or loss budget is planned without retraining's gain, so tfdc compress will "
        "reach a smaller file. The bytes are those of the file tfdc compress writes, exported "
        "with a batch size of 1; tfdc.export's default (any batch size) writes about 0.2 KB "
        "more: plan in Python (tfdc.plan) for that file.")
    _add_model_and_data(plan, "plan for", confidence=False)
    plan.add_argument("--plot", metavar="PNG", default=None,
                      help="also draw the sensitivity curves into PNG (needs matplotlib)")
    plan.add_argument("--json", metavar="JSON", default=None,
                      help="also write the plan (its settings, for tfdc.GradualPruning and "
                      "tfdc.ClusteredFineTuning, and predictions) as JSON ('-': alone on stdout, "
                      "the rest on stderr); its keys are tfdc.Plan's attributes, errors as "
                      "fractions (0.0215), max_error_increase in percentage points as given")
    plan.set_defaults(func=cmd_plan)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reporting a usage mistake as one `tfdc: error:`
    line that names the command and where its options are listed (not the
    usage block before it); exit status 2 as argparse's."""

    def error(self, message):
        command = self.prog[len(_PROG):].strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"{_PROG}: error: {where}{message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        # Arguments left over are found by the top parser, which named its
        # own --help, not the command's.
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(args, "command", None)
            (getattr(self, "_commands", {}).get(command) or self).error(
                f"unrecognized arguments: {' '.join(extras)}")
        return args


def build_parser():
    parser = _Parser(
        prog=_PROG, description="Deep Compression (pruning, trained quantization, Huffman "
        "coding) for Keras 3 models shipped as TensorFlow Lite / LiteRT files.",
        epilog="Each command's --help lists its options with the values they accept "
        "(e.g. tfdc demo --help: --bits 1..8, --sparsity in [0, 1)).")
    from tfdc import __version__
    parser.add_argument("--version", action="version", version=f"tfdc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from tfdc.demo import DEFAULT_CONFIDENCE, DEFAULT_RATIO, MIN_TRAIN_IMAGES  # one home
    demo = sub.add_parser(
        "demo", help="end-to-end demo: train LeNet on MNIST, compress it to a budget "
        "(plan, prune, quantize, pack) and verify it",
        description="Train a float LeNet and compress it with tfdc.compress: per-layer "
        f"sparsity and bits planned for a budget (default: 1/{DEFAULT_RATIO} of the float32 "
        "size; "
        "--target-bytes or --max-error-increase to choose), pruning (tfdc.GradualPruning), "
        "weight sharing (tfdc.ClusteredFineTuning) and the packed .tflite (tfdc.export); then "
        "decode it and measure its test error in the LiteRT interpreter. --sparsity / --bits "
        "run the same stages with hand-set settings instead. Prints the per-layer table and "
        "writes the model, reports and plots to --out.")
    demo.add_argument("--quick", action="store_true",
                      help="a short run: 3 + 4 + 1 epochs (baseline, pruning, clustering)")
    demo.add_argument("--out", default="tfdc_demo_out",
                      help="output folder, created if missing (default: tfdc_demo_out)")
    demo.add_argument("--network", choices=["lenet_300_100", "lenet5"], default="lenet_300_100",
                      help="network (default: lenet_300_100)")
    demo.add_argument("--dataset", choices=["mnist", "digits"], default="mnist",
                      help="mnist (default) or digits: scikit-learn's bundled 8x8 digits, "
                      "no download")
    demo.add_argument("--mnist", metavar="PATH",
                      help="mnist.npz to use, in Keras's layout (x_train, y_train, x_test, "
                      "y_test; default: $TFDC_MNIST, else Keras's cache or download)")
    low, high = _bits_range()
    demo.add_argument("--sparsity", type=_per_layer(_sparsity_value), default=None, metavar="S",
                      help="hand-set instead of planned: fraction of weights to prune, in "
                      "[0, 1): a number, layer=value pairs (fc1=0.92,fc2=0.91), or 'paper' (the "
                      "paper's Tables 2-3); with --bits alone: fc1=0.93,fc2=0.915,fc3=0.75 for "
                      "LeNet-300-100")
    demo.add_argument("--bits", type=_per_layer(_bits_value), default=None, metavar="B",
                      help=f"hand-set instead of planned: bits per shared weight, {low}..{high} "
                      "(2**B clusters): a number, layer=value pairs, or 'paper' (6 for "
                      "LeNet-300-100); with --sparsity alone: fc1=4,fc2=5,fc3=5 for "
                      "LeNet-300-100, conv 8 / fc 5 for LeNet-5")
    budget = demo.add_mutually_exclusive_group()
    budget.add_argument("--target-bytes", type=_byte_count, default=None, metavar="N",
                        help="compress to a packed file of at most N bytes (within 5 %%; "
                        f"20000, 20KB) (default: the float32 size / {DEFAULT_RATIO})")
    budget.add_argument("--max-error-increase", type=_error_points, default=None,
                        metavar="P", help="compress with tfdc.compress to the smallest file "
                        "whose validation error is at most P percentage points above the float "
                        "model's, with --confidence (e.g. 0.2)")
    demo.add_argument("--confidence", type=_confidence, default=None, metavar="C",
                      help="with --max-error-increase: the probability, in (0, 1), that the "
                      "kept file's true increase is within P (an upper bound paired on the "
                      f"validation images; default {DEFAULT_CONFIDENCE}), or 'none': the measured "
                      "increase itself must be within P (smaller files, less sure)")
    demo.add_argument("--epochs", type=_at_least(0), default=None, metavar="N",
                      help="baseline training epochs, >= 0 (default 15; 3 with --quick)")
    demo.add_argument("--prune-epochs", type=_at_least(1), default=None, metavar="N",
                      help="pruning + retraining epochs, >= 1 (default: --epochs + 3; 4 with "
                      "--quick)")
    demo.add_argument("--cluster-epochs", type=_at_least(1), default=None, metavar="N",
                      help="clustered fine-tuning epochs, >= 1 (default: epochs/4; 1 with "
                      "--quick)")
    demo.add_argument("--train-size", type=_at_least(MIN_TRAIN_IMAGES), default=None,
                      metavar="N", help="use only the first N training images, N >= "
                      f"{MIN_TRAIN_IMAGES} (default: all)")
    demo.add_argument("--test-size", type=_at_least(1), default=None, metavar="N",
                      help="use only the first N test images, N >= 1 (default: all)")
    demo.add_argument("--no-plots", action="store_true", help="do not write the PNG figures")
    demo.add_argument("--seed", type=_seed, default=1234,
                      help="random seed, 0..2^32-1 (default 1234)")
    # For tests: a tiny run that finishes in well under a minute.
    demo.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)

    _add_compress_parser(sub)
    _add_plan_parser(sub)
    _add_pack_parser(sub)

    inspect = sub.add_parser(
        "inspect", help="print the per-layer compression report of a .tflite file",
        description="Print the per-layer report of a packed .tflite file (for a plain "
        ".tflite: what packing it would give).")
    inspect.add_argument("file", help="a packed or plain .tflite file ('-': standard input)")
    fmt = inspect.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print a Markdown table")
    fmt.add_argument("--json", action="store_true", help="print every number as JSON")
    inspect.set_defaults(func=cmd_inspect)

    decode = sub.add_parser(
        "decode", help="decode a packed .tflite into a standard .tflite",
        description="Decode a packed .tflite file into a standard .tflite model that any "
        "TFLite / LiteRT runtime loads. The output is written atomically.")
    decode.add_argument("input", metavar="IN", help="the packed .tflite file ('-': standard "
                        "input)")
    decode.add_argument("output", metavar="OUT", help="where to write the decoded .tflite (a "
                        "file path in an existing folder, not IN itself; '-': standard output, "
                        "the summary then on standard error)")
    decode.add_argument("--backend", choices=["auto", "native", "python"], default="auto",
                        help="decoder: the C extension, pure NumPy, or auto (default)")
    decode.set_defaults(func=cmd_decode)

    bench = sub.add_parser(
        "bench", help="time decoding and LiteRT inference of a .tflite file",
        description="Host timings: decode time per backend (native C, Python), then "
        "LiteRT interpreter load time and mean inference latency.")
    bench.add_argument("file", help="a packed or plain .tflite file")
    bench.add_argument("--runs", type=_at_least(1), default=20,
                       help="repetitions of decoding and loading (their median), >= 1 "
                       "(default 20); inference is the mean of max(RUNS, 50) runs")
    bench.add_argument("--threads", type=_at_least(1, MAX_THREADS), default=None,
                       help=f"interpreter threads, 1..{MAX_THREADS} (default: the runtime's)")
    bench.set_defaults(func=cmd_bench)
    parser._commands = dict(sub.choices)  # for parse_args's leftovers
    return parser


# ----------------------------------------------------------------- commands
def _summary_stream(output):
    """Where a command's summary line goes: standard error when OUT is a
    device or a pipe (`/dev/stdout`: the file's bytes go to standard
    output, unmixed), else standard output."""
    from tfdc.exporter import is_special_file
    return sys.stderr if output == STANDARD_OUTPUT or is_special_file(output) else sys.stdout


def _check_readable(path):
    from tfdc.exporter import check_readable
    try:
        check_readable(path)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None


def _read(path):
    _check_readable(path)
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a .tflite file")
    from tfdc.errors import FormatError
    from tfdc.runtime import read_model_bytes
    try:
        return read_model_bytes(path)  # refuses what is no .tflite after 8 bytes
    except FormatError as e:
        raise UserError(str(e)) from None


def _check_tflite(data, path):
    """What `data` is: "packed" (a packed file, or a damaged one the decoder
    will describe), "decoded" (decoded by tfdc: a standard model) or "plain".
    Raises UserError, naming `path`, for an empty or non-TFLite file and for
    a packed file whose section key is damaged."""
    from tfdc.errors import FormatError
    from tfdc.runtime import check_tflite_header
    from tfdc.unpack import damaged_key, has_section_entry, is_decoded
    try:
        check_tflite_header(data, path)
    except FormatError as e:
        raise UserError(str(e)) from None
    damage = damaged_key(data)
    if damage:
        raise UserError(f"{path}: {damage}")
    if is_decoded(data):
        return "decoded"
    if has_section_entry(data):
        return "packed"
    from tfdc.flatbuf import read_model
    try:
        read_model(data)
    except FormatError as e:  # e.g. the first bytes of a file, packed or plain
        raise UserError(f"{path}: a damaged or truncated .tflite file ({e})") from None
    return "plain"


def cmd_demo(args):
    from tfdc import demo
    config = demo.DemoConfig(
        network=args.network, dataset=args.dataset, mnist=args.mnist, sparsity=args.sparsity,
        bits=args.bits, epochs=args.epochs, prune_epochs=args.prune_epochs,
        cluster_epochs=args.cluster_epochs, train_size=args.train_size,
        test_size=args.test_size, quick=args.quick or args.tiny, out=args.out,
        plots=not args.no_plots, seed=args.seed, target_bytes=args.target_bytes,
        max_error_increase=args.max_error_increase)
    if args.confidence is not None:
        if args.max_error_increase is None:
            raise UsageError("--confidence applies to --max-error-increase: give both")
        config.confidence = None if args.confidence == "none" else args.confidence
    if (args.target_bytes is not None or args.max_error_increase is not None) and \
            (args.sparsity is not None or args.bits is not None):
        raise UsageError("--target-bytes / --max-error-increase let tfdc.compress choose the "
                        "per-layer sparsity and bits: leave out --sparsity and --bits")
    if args.tiny:
        # Tests: a few hundred steps in all.
        for name, value in (("epochs", 1), ("prune_epochs", 1), ("cluster_epochs", 1),
                            ("train_size", 3072), ("test_size", 1000)):
            if getattr(config, name) is None:
                setattr(config, name, value)
    if args.mnist and args.dataset != "mnist":
        raise UserError(f"--mnist applies to --dataset mnist, not --dataset {args.dataset}")
    if args.mnist:
        try:
            _check_readable(args.mnist)
        except UserError as e:
            raise UserError(f"--mnist {e}") from None
    if args.mnist and os.path.isdir(args.mnist):
        raise UserError(f"--mnist {args.mnist}: is a directory, expected an mnist.npz file")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not a directory (the demo writes "
                        "several files into --out)")
    created = not os.path.exists(args.out)
    try:  # now, not after the data has loaded: a parent that is a file, no permission
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {args.out}: cannot create it: {e.strerror}") from None
    if not os.access(args.out, os.W_OK | os.X_OK):  # an existing folder: now, not after training
        raise UserError(f"--out {args.out}: cannot write in it (permission denied or a "
                        "read-only file system)")
    if args.no_plots is False:
        _require_matplotlib("plots need", " (or pass --no-plots)")
    with warnings.catch_warnings():
        warnings.showwarning = _show_compress_warning  # as tfdc compress shows them
        try:
            demo.run(config)
        except BaseException:
            if created and os.path.isdir(args.out) and not os.listdir(args.out):
                os.rmdir(args.out)  # made for a run that wrote nothing (no MNIST, Ctrl-C)
            raise
    return 0


def _require_matplotlib(what, alternative=""):
    """A UserError before any work if matplotlib (the `demo` extra) is
    missing: `what` needs it."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError(f"{what} matplotlib: pip install 'tfdc[demo]'{alternative}")


# A file name given to --import by mistake, even one that does not exist.
_NOT_MODULE_SUFFIXES = {".npz", ".npy", ".keras", ".h5", ".tflite", ".json", ".csv", ".txt",
                        ".pkl", ".png"}


def _import_user_code(modules):
    """Import each of `modules` (names, from the working folder too, or
    paths of .py files): the code a saved model needs to load."""
    import importlib
    import importlib.util
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            if module.endswith(".py"):
                if not os.path.isfile(module):
                    raise FileNotFoundError(f"no such file {module}")
                name = os.path.splitext(os.path.basename(module))[0]
                spec = importlib.util.spec_from_file_location(name, module)
                code = importlib.util.module_from_spec(spec)
                sys.modules[name] = code
                try:
                    spec.loader.exec_module(code)
                except BaseException:
                    del sys.modules[name]  # not left half-imported
                    raise
            elif os.path.isfile(module) or os.sep in module or (
                    os.altsep and os.altsep in module) or not all(
                    part.isidentifier() for part in module.split(".")) or \
                    os.path.splitext(module)[1] in _NOT_MODULE_SUFFIXES:
                # "../data.npz" read as a relative import; "data.npz" as
                # module npz of a package "data" (a missing one: "No module
                # named 'data'", exit 1).
                raise UsageError(f"--import {module}: not a module name (e.g. my_layers) or "
                                 "a path to a .py file")
            else:
                importlib.import_module(module)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's module raises what it raises
            raise UserError(f"--import {module}: cannot import it: "
                            f"{type(e).__name__}: {e}") from None


def _load_keras_model(path, safe_mode=True, imports=()):
    """The Keras model in `path`, or a UserError saying why not."""
    _import_user_code(imports)
    _check_readable(path)
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory (a TensorFlow SavedModel?); tfdc needs a "
                        "Keras model file: model.save('model.keras')")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        raise UserError(f"{path}: a .tflite file, already converted; tfdc compress retrains "
                        "the Keras model (.keras). To pack a .tflite as it is: tfdc pack")
    import zipfile
    if head == b"\x89HDF\r\n\x1a\n" and str(path).endswith(".keras"):
        # Keras reads the format from the name, and said "File not found".
        raise UserError(f"{path}: an HDF5 model file (Keras's legacy .h5) named .keras: "
                        "rename it to .h5")
    if head != b"\x89HDF\r\n\x1a\n" and not zipfile.is_zipfile(path):
        # Keras says "File not found" of a file that is there.
        raise UserError(f"{path}: not a Keras model file: a .keras file is a zip archive "
                        f"(model.save('model.keras')), and this one is "
                        + ("truncated or damaged" if head[:2] == b"PK" else "not one"))
    import keras

    from tfdc.errors import first_line
    try:
        return keras.models.load_model(path, safe_mode=safe_mode)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        line = first_line(e)
        if "safe_mode" in line:  # a Lambda layer's Python code
            line = line.split(". ")[0] + " (for a file you trust: --no-safe-mode)"
        missing = re.search(r"Could not locate (class|function) '([^']+)'", line)
        if missing:  # the model's own code: Keras's message goes on for 1,500 characters
            line = (f"it uses {missing.group(1)} {missing.group(2)!r} of your code: give "
                    f"--import MODULE, the module that defines it (registered with "
                    "@keras.saving.register_keras_serializable)")
        elif "could not be deserialized" in line:  # a custom layer inside a functional model
            line = (f"{line.split('. ')[0]}: if it uses layers or losses of your own code, "
                    "give --import MODULE, the module that defines them (registered with "
                    "@keras.saving.register_keras_serializable)")
        raise UserError(f"{path}: cannot load it as a Keras model: {line}") from None


def _load_splits(args):
    """DATA's splits (`load_npz_splits`); --validation-split given for a
    DATA that has x_val is refused (it was ignored without a word)."""
    from tfdc.datasets import load_npz_splits
    split = 0.1 if args.validation_split is None else args.validation_split
    loaded = load_npz_splits(args.data, split)
    if args.validation_split is not None and loaded[3].startswith("x_val"):
        raise UsageError(f"--validation-split: {args.data} has x_val, y_val, the validation "
                         "data; leave the option out, or drop x_val")
    return loaded


def cmd_compress(args):
    import tfdc
    from tfdc.exporter import check_writable
    if args.output == STANDARD_OUTPUT:  # "-" wrote a file named "-"
        raise UsageError("OUT is standard output: tfdc compress writes OUT and reads it back to "
                         "measure it; give a file path")
    _check_not_an_input(args.output, MODEL=args.model, DATA=args.data)
    check_writable(args.output)
    from tfdc.exporter import is_special_file
    if is_special_file(args.output):
        raise UserError(f"{args.output}: not a regular file: tfdc compress writes OUT and reads "
                        "it back to measure it; give a file path")
    if args.confidence is not None and args.target_bytes is not None:
        raise UsageError("--confidence applies to --max-error-increase and --max-loss-increase, "
                        "not to --target-bytes")
    train, validation, test, note = _load_splits(args)
    model = _load_keras_model(args.model, args.safe_mode, args.imports)
    _check_inputs(model, train[0], "compress")
    _check_outputs(model, train[1], "compress")
    train, validation, test = (_keyed_as_model(model, split) for split in (train, validation, test))
    from tfdc.datasets import array_name
    if test is not None:  # a bad test split fails now, not after the training
        score, float_test = _test_score(model, *test)
        from tfdc.compressor import other_scale
        for key, found in other_scale(test[0], train[0]):
            print(f"{_PROG}: warning: {array_name('x_test', key)}: its values {found}: is it "
                  "preprocessed as x_train is? The test error is measured on it",
                  file=sys.stderr)
    from tfdc.scan import _items, _length
    stored = ", ".join(f"{array_name('x', k)} {_described(a)}" for k, a in _items(train[0]))
    print(f"{args.data}: training on {_length(train[0]):,} examples ({stored}, given to the "
          f"model as stored); validation: {note}")
    import keras
    keras.utils.set_random_seed(args.seed)
    confidence = {}
    if args.confidence is not None:
        confidence["confidence"] = None if args.confidence == "none" else args.confidence
    with warnings.catch_warnings():
        # A missed budget is reported below, with the exit status; compress's
        # other warnings (too few validation examples) as they come, as ours.
        warnings.simplefilter("ignore", tfdc.BudgetMissedWarning)
        warnings.showwarning = functools.partial(_show_compress_warning, data=(args.data, note))
        try:
            result = tfdc.compress(model, train, validation, log=lambda line: print(
                                       _as_options(line)), target_bytes=args.target_bytes,
                                   max_error_increase=args.max_error_increase,
                                   max_loss_increase=args.max_loss_increase, path=args.output,
                                   epochs=args.epochs, batch_size=args.batch_size,
                                   distill=args.distill, full_integer=args.full_integer,
                                   **confidence)
        except ValueError as e:
            raise _named_by_key(e, args.data, note) from None
    print()
    if args.report:
        print(result.plan)
        print()
        print(result.report)
        print()
    print(_as_options(str(result)))
    if test is not None:
        from tfdc.demo import tflite_outputs
        if isinstance(float_test, list):  # several outputs, in model.outputs' order
            packed = tflite_outputs(result.path, test[0], every_output=True)
        else:
            packed = tflite_outputs(result.path, test[0]).reshape(float_test.shape)
        (name, value), (_, reference) = score(packed), score(float_test)
        if name == "error":
            values = (f"{value:.2%} packed (LiteRT), {reference:.2%} float (Keras), "
                      f"{100 * (value - reference):+.2f} points")
        else:
            values = f"{value:.4g} packed (LiteRT), {reference:.4g} float (Keras)"
        print(f"test (x_test, {_length(test[0]):,} examples, not used to compress): {name} "
              f"{values}")
    if not result.met:
        # Not "error:": OUT is written, the run closest to the budget.
        print(f"{_PROG}: budget missed (see above); {args.output} holds the run kept",
              file=sys.stderr)
        return EXIT_BUDGET_MISSED
    return 0


def cmd_plan(args):
    import contextlib
    with warnings.catch_warnings():
        warnings.showwarning = _show_compress_warning  # as tfdc compress shows them
        # --json -: the JSON alone on stdout (for a pipe), everything else on stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json == "-" else \
                contextlib.nullcontext():
            plan = _plan_command(args)
    if args.json == "-":
        print(plan.to_json())
    return 0


def _plan_command(args):
    """The plan of `tfdc plan`, printed (and its files written)."""
    import inspect

    from tfdc.compressor import (_epochs, _inference_model, _plan, _steps, _training_examples,
                                 compress)
    # Its scan is compress's, held to a share of compress's default training
    # on the training split (tfdc.compressor.scan_options).
    batch = inspect.signature(compress).parameters["batch_size"].default
    from tfdc.exporter import check_writable, write_atomically
    from tfdc.scan import one_output_view
    if args.plot is not None and args.json is not None and \
            os.path.realpath(args.plot) == os.path.realpath(args.json):
        raise UsageError(f"--plot and --json are the same file ({args.plot}): give two paths")
    for option, path, example in (("--plot", args.plot, "scan.png"),
                                  ("--json", args.json, "plan.json")):
        if path is not None and not (option == "--json" and path == "-"):
            _check_not_an_input(path, option, MODEL=args.model, DATA=args.data)
            check_writable(path, example)
    if args.plot is not None:
        _require_matplotlib("--plot needs")
        from matplotlib.backend_bases import FigureCanvasBase
        kinds = FigureCanvasBase.get_supported_filetypes()
        if os.path.splitext(args.plot)[1].lstrip(".").lower() not in kinds:
            raise UserError(f"{args.plot}: --plot draws an image, its kind named by the file's "
                            f"ending: .png, or one of "
                            f".{', .'.join(sorted(set(kinds) - {'png'}))}")
    train, validation, _, note = _load_splits(args)
    model = _load_keras_model(args.model, args.safe_mode, args.imports)
    _check_inputs(model, validation[0], "plan")
    _check_outputs(model, validation[1], "plan")
    validation = _keyed_as_model(model, validation)
    # The model compress plans for: the plain output, BatchNormalization folded.
    model = _inference_model(one_output_view(model)[0])
    from tfdc.planner import _check_labels
    budget = {name: value for name, value in (("target_bytes", args.target_bytes),
                                              ("max_error_increase", args.max_error_increase),
                                              ("max_loss_increase", args.max_loss_increase))
              if value is not None}
    cache = {}  # compress's first step itself: its scan, its plan, its batch size 1
    try:
        _check_labels(model, *validation, args.max_error_increase)  # before the scan
        print(f"{args.data}: validation: {note}")
        plan = _plan(model, validation, budget, 1, None, print, cache,
                     _training_examples(train, _epochs(None, _steps(train, batch)), batch))
    except ValueError as e:
        raise _named_by_key(e, args.data, note) from None
    scan = cache["sensitivity"]
    print(scan.to_markdown().rstrip())
    print()
    print(plan)
    if args.plot is not None:
        scan.plot(args.plot)
        print(f"sensitivity curves: {args.plot}")
    if args.json is not None and args.json != "-":
        write_atomically(args.json, plan.to_json().encode())
        print(f"plan: {args.json}")
    return plan


def _show_compress_warning(message, category, filename, lineno, file=None, line=None,
                           data=None):
    """`warnings.showwarning` for `tfdc compress` and `tfdc demo`:
    tfdc.compress's own warnings as `tfdc: warning: ...` lines, any other as
    Python shows it. `data`: `(DATA, note)` of the command's .npz, whose keys
    name the data (`_named_by_key`)."""
    text = str(message)
    prefix = next((p for p in ("tfdc.compress: ", "tfdc.plan: ") if text.startswith(p)), None)
    if prefix:
        text = _as_options(text[len(prefix):])
        if data is not None:
            text = str(_named_by_key(ValueError(text), *data))
        print(f"{_PROG}: warning: {text}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line),
              file=sys.stderr, end="")


def _option(name):
    """A keyword of tfdc.compress / tfdc.plan as its option: `--target-bytes`."""
    return "--" + name.replace("_", "-")


# The Python keywords in tfdc.compress's, tfdc.plan's and tfdc.export_tflite's
# messages, as the options of tfdc compress / plan / pack (whose user gave
# options, not keywords); their Python-only advice (other grids) left out.
_KEYWORDS_AS_OPTIONS = (
    (re.compile(r" \(to tfdc\.plan also [^)]*\)"), ""),
    (re.compile(r"\bnegative_zeros='(\w+)'"), lambda m: f"--negative-zeros {m[1]}"),
    (re.compile(r"\bgive distill=False\b"), "leave out --distill"),
    (re.compile(r"\bdistill=True\b"), "--distill"),
    (re.compile(r"\bconfidence=None\b"), "--confidence none"),
    (re.compile(r"\btarget_bytes=([\d,]+)"), lambda m: "--target-bytes " + m[1].replace(",", "")),
    (re.compile(r"\((epochs|batch_size)=\)"), lambda m: f"({_option(m[1])})"),
    (re.compile(r"\b(target_bytes|max_error_increase|max_loss_increase|confidence|batch_size|"
                r"epochs)=(?=\S)"), lambda m: _option(m[1]) + " "),
    (re.compile(r"\b(target_bytes|max_error_increase|max_loss_increase)\b"),
     lambda m: _option(m[1])),
)


def _as_options(text):
    """`text`, a message of tfdc.compress, tfdc.plan or tfdc.export_tflite, in
    the words of the command line (`--target-bytes 500`, not
    `target_bytes=500`)."""
    for pattern, words in _KEYWORDS_AS_OPTIONS:
        text = pattern.sub(words, text)
    return text


def _described(a):
    """An array's dtype, and its range if it is numeric."""
    if a.size and a.dtype.kind in "biuf":
        return f"{a.dtype} in [{a.min():.4g}, {a.max():.4g}]"
    return str(a.dtype)


def _named_by_key(error, data, note):
    """`error`, a ValueError of `tfdc.compress` / `tfdc.plan` about their
    `train_data` or `validation_data`, named by DATA's arrays (the command
    line's user gave keys of a .npz, not Python arguments); other errors as
    they are."""
    text = str(error)
    validation = ("x_val / y_val" if note.startswith("x_val")
                  else "x_train / y_train (the validation split)")
    for argument, keys in (("train_data", "x_train / y_train"), ("validation_data", validation)):
        if text.startswith(argument + ":"):
            return ValueError(f"{data}, {keys}:{text[len(argument) + 1:]}")
    return error


def _check_inputs(model, x, who):
    """Refuse, before any work, DATA's x/KEY arrays that are not one per
    model input: a one-input model given `x_train/0` or `x_train/NAME`
    failed in the middle of the scan (the one-item list read as a batch
    axis), three arrays for two inputs with a traceback in `tfdc plan`."""
    import numpy as np

    from tfdc.layers import has_graph
    if isinstance(x, np.ndarray) or not has_graph(model):
        return
    inputs = [t.name for t in model.inputs]
    keys = ", ".join(map(str, x if isinstance(x, dict) else range(len(x))))
    if len(inputs) == 1:
        raise UserError(f"{who}: the model has one input; DATA holds x as several arrays "
                        f"(x_train/KEY: {keys}): give one x_train")
    if len(x) != len(inputs):
        raise UserError(f"{who}: the model has {len(inputs)} inputs ({', '.join(inputs)}); DATA "
                        f"holds {len(x)} x_train/KEY arrays ({keys}): give one per input, KEY "
                        "0, 1, ... in model.inputs' order or the input's name")


def _keyed_as_model(model, split):
    """A split `(x, y)` whose x arrays (x_train/0, x_train/1, ... in
    `model.inputs`' order) are keyed as the model's dict of inputs takes
    them: as a list they failed ("The structure of inputs doesn't match"),
    though the README promises positional keys. Anything else as it is."""
    from tfdc.layers import has_graph
    if split is None or not isinstance(split[0], list) or not has_graph(model):
        return split
    structure = model.input
    if not isinstance(structure, dict):
        return split
    key_of = {id(t): key for key, t in structure.items()}
    return ({key_of[id(t)]: a for t, a in zip(model.inputs, split[0])},) + tuple(split[1:])


def _check_outputs(model, y, who):
    """Refuse, before any work, a model whose outputs DATA's y does not
    match: one y array for a model with several outputs, y/KEY arrays for
    a model with one, or an uncompiled model with several (scored by their
    compiled losses, `tfdc.scan.check_outputs`)."""
    import numpy as np

    from tfdc.scan import _output_count, _outputs_named, check_outputs
    several = _output_count(model) > 1
    if isinstance(y, np.ndarray) and several:
        raise UserError(f"{who}: the model has several outputs, {_outputs_named(model)}; DATA "
                        "holds one y: give one y_train/KEY (y_val/KEY, y_test/KEY) per output, "
                        "KEY 0, 1, ... in model.outputs' order or the output's name")
    if not isinstance(y, np.ndarray) and not several:
        raise UserError(f"{who}: the model has one output; DATA holds y as several arrays "
                        "(y_train/KEY): give one y_train")
    check_outputs(model, who)


def _test_score(model, x, y):
    """How the test split is scored, and the float model's outputs on it:
    `score(outputs) -> ("error", top-1 error)` for a classifier (the rule
    of `tfdc.mistakes`), else `("loss", compiled loss)`, decided as
    `tfdc.compress` decides it (a model with several outputs: the sum of
    its weighted compiled losses, `tfdc.scan.SummedLoss`, on a list of
    outputs in `model.outputs`' order). Run on the float model now, so that
    an x_test or y_test it cannot take is an error before any training."""
    import numpy as np

    from tfdc.compressor import _float_mistakes, _takes
    from tfdc.datasets import array_name
    from tfdc.errors import first_line
    from tfdc.mistakes import mistakes, output_from_logits
    from tfdc.scan import (SummedLoss, _items, _output_count, loss_callable, mean_loss,
                           one_output_view)
    model, _ = one_output_view(model)  # scored as compress scores it
    several = _output_count(model) > 1
    try:
        outputs = model.predict(x, batch_size=512, verbose=0)
    except Exception as e:  # noqa: BLE001 - Keras raises several types for this
        shapes = ", ".join(f"{array_name('x', k)} of shape {a.shape}" for k, a in _items(x))
        raise UserError(f"x_test: the model cannot run on {shapes}{_takes(model)}: "
                        f"{first_line(e)}") from None
    if several:  # in model.outputs' order, as compress reads them (_validation_outputs)
        import keras
        flat = keras.tree.flatten(outputs)
        loss = SummedLoss(model)
        try:
            mean_loss(loss, y, flat)
        except Exception as e:  # noqa: BLE001 - the loss's own error names the problem
            raise UserError(f"y_test: the model's losses cannot take it: {first_line(e)}") \
                from None
        return (lambda out: ("loss", mean_loss(loss, y, out))), [np.asarray(a) for a in flat]
    outputs = np.asarray(outputs)
    from_logits = output_from_logits(model)
    wrong, _ = _float_mistakes(model, outputs.reshape(len(y), -1), y, from_logits, None,
                               "y_test")
    if wrong is not None:
        return (lambda out: ("error", float(np.mean(mistakes(out.reshape(len(y), -1), y,
                                                              from_logits))))), outputs
    loss = loss_callable(model.loss)
    try:
        mean_loss(loss, y, outputs)
    except Exception as e:  # noqa: BLE001 - the loss's own error names the problem
        raise UserError(f"y_test: the model's loss cannot take it: {first_line(e)}") from None
    return (lambda out: ("loss", mean_loss(loss, y, out))), outputs


def _check_pack_input(data, path):
    """Refuse what `tfdc pack` cannot pack, saying what the file is."""
    from tfdc.unpack import is_packed
    kind = _check_tflite(data, path)
    if kind == "packed":
        if is_packed(data):
            raise UserError(f"{path}: already tfdc-packed (use it as it is; 'tfdc decode' "
                            "turns it back into a plain .tflite)")
        from tfdc.unpack import decode
        decode(data)  # a damaged packed file: the decoder's FormatError says where
        raise UserError(f"{path}: carries a tfdc section entry but is neither a packed nor a "
                        "decoded file (damaged?)")


def _check_not_an_input(out, what="OUT", **inputs):
    """Refuse an output (`what`: how the command names it) that is one of
    the named input files (also through a link): writing it would replace
    that input. A usage mistake (exit status 2), as two options naming one
    file are."""
    for name, path in inputs.items():
        if os.path.exists(path) and os.path.exists(out) and os.path.samefile(path, out):
            raise UsageError(f"{out}: {what} is {name}; write it to another path")


def _check_pack_output(inp, out):
    from tfdc.exporter import check_writable
    if out == STANDARD_OUTPUT:
        return
    check_writable(out)  # the folder as written, not as abspath tidies it
    _check_not_an_input(out, IN=inp)


def cmd_pack(args):
    from tfdc.errors import FormatError
    from tfdc.exporter import export_tflite
    data = _read(args.input)
    _check_pack_input(data, args.input)
    _check_pack_output(args.input, args.output)
    select = args.select.pattern if args.select is not None else None
    import tempfile
    with warnings.catch_warnings(record=True) as caught, tempfile.TemporaryDirectory() as folder:
        warnings.simplefilter("always")
        # Standard output gets the file once it is whole (written to a
        # scratch folder first: export_tflite writes a path).
        target = os.path.join(folder, "packed.tflite") if args.output == STANDARD_OUTPUT \
            else args.output
        try:
            report = export_tflite(data, target, weights=args.weights,
                                   codebook_fp16=args.codebook_fp16,
                                   gap_alphabet=args.gap_alphabet, select=select,
                                   block=args.block, min_bytes=args.min_bytes,
                                   strip_debug=args.strip_debug,
                                   negative_zeros=args.negative_zeros)
        except FormatError as e:
            raise UserError(f"{args.input}: not a valid .tflite file: {e}") from None
        if args.output == STANDARD_OUTPUT:
            with open(target, "rb") as f:
                _write_output(STANDARD_OUTPUT, f.read())
    written = report.packed_bytes  # not the size of OUT: it may be /dev/stdout or a pipe
    out = _summary_stream(args.output)
    if args.report and (report.layers or report.constants):
        print(report.to_text(), file=out)
        print(file=out)
    line = f"{_shown(args.input)} ({len(data):,} B) -> {_shown(args.output)} ({written:,} B): "
    if not report.section_bytes:
        # export_tflite wrote IN unchanged and warned with the size packing gave.
        why = "; ".join(str(w.message) for w in caught) or "wrote the input unchanged"
        print(line + f"nothing gained ({why})", file=out)
        return 0
    for w in caught:
        print(f"{_PROG}: warning: {_as_options(str(w.message))}", file=sys.stderr)
    saved = len(data) - written
    n = len(report.layers) + len(report.constants)
    from tfdc.format import APPENDED_ARCHIVE
    appended = [layer for layer in report.constants if layer.name == APPENDED_ARCHIVE]
    n -= len(appended)
    packed = (f"{n} buffer{'s' if n != 1 else ''} packed" if n else
              "no weight buffer coded: the gain is the compressed flatbuffer")
    if appended:
        packed += (f", and the {appended[0].raw_bytes:,} B zip archive appended to it (TFLite "
                   "metadata's associated files) kept at the end of the decoded file")
    if report.int8_weights:
        k = len(report.int8_weights)
        packed += (f"; {k} float32 kernel{'s' if k != 1 else ''} stored as int8 codes "
                   "(--weights int8: one scale per tensor, lossy at int8 resolution)")
    print(line + f"{saved:,} B smaller ({100 * saved / len(data):.3g} %, "
          f"{len(data) / written:.2f}x), {packed}", file=out)
    return 0


def cmd_inspect(args):
    import tfdc
    data = _read(args.file)
    kind = _check_tflite(data, args.file)
    report = tfdc.inspect(data)
    report.path = args.file
    if kind == "decoded" and not args.json:
        print(f"{args.file}: a standard .tflite model decoded from a tfdc-packed file; "
              "it packs as:\n")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    elif args.markdown:
        print(report.to_markdown())
    else:
        print(report.to_text())
    return 0


def cmd_decode(args):
    from tfdc.unpack import decode
    data = _read(args.input)
    kind = _check_tflite(data, args.input)
    if kind == "decoded":
        raise UserError(f"{args.input}: already decoded (a standard .tflite model that any "
                        "TFLite / LiteRT runtime loads as it is); nothing to do")
    if kind == "plain":
        raise UserError(f"{args.input}: not a tfdc-packed file (it is a plain .tflite already)")
    try:
        decoded = decode(data, backend=args.backend)
    except ImportError as e:
        raise UserError(f"the {args.backend} decoder is not available: {e}") from None
    _write_output(args.output, decoded)  # checked before decoding too (_check_output)
    print(f"{_shown(args.input)} ({len(data):,} B) -> {_shown(args.output)} "
          f"({len(decoded):,} B)",
          file=_summary_stream(args.output))
    return 0


def _median_ms(fn, runs):
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _bench_input(rng, shape, dtype):
    """Random values for one input of `tfdc bench`: uniform in [0, 1) for a
    float, in [-128, 127] (clipped to the type) for an integer, 0 / 1 for a
    bool, a short byte string for a string."""
    import numpy as np
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127), shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    return np.full(shape, b"tfdc", dtype=object)  # strings


def cmd_bench(args):
    import numpy as np

    from tfdc.errors import first_line
    from tfdc.runtime import interpreter_class
    from tfdc.unpack import decode
    data = _read(args.file)
    kind = _check_tflite(data, args.file)
    packed = kind == "packed"
    runs = max(1, args.runs)
    described = {"packed": "tfdc-packed", "plain": "plain .tflite",
                 "decoded": "decoded by tfdc (a standard .tflite)"}[kind]
    print(f"{args.file}: {len(data):,} B, {described}")
    model = data
    if packed:
        model = decode(data)
        print(f"decoded: {len(model):,} B")
        from tfdc.errors import FormatError
        for backend in ("native", "python"):
            try:
                decode(data, backend=backend)
            except ImportError as e:
                print(f"decode ({backend:6s}): not available ({e})")
                continue
            except FormatError as e:
                # An extension built before this file's format version.
                print(f"decode ({backend:6s}): cannot read this file ({e})")
                continue
            ms = _median_ms(lambda: decode(data, backend=backend), runs)
            print(f"decode ({backend:6s}): {ms:9.3f} ms median of {runs}")
    kwargs = {"num_threads": args.threads} if args.threads else {}
    cls = interpreter_class()

    def load():
        interpreter = cls(model_content=model, **kwargs)
        interpreter.allocate_tensors()
        return interpreter

    try:
        interpreter = load()
    except (RuntimeError, ValueError) as e:  # custom or Flex ops this runtime lacks
        raise UserError(f"{args.file}: LiteRT cannot load the model: {first_line(e)}") \
            from None
    print(f"LiteRT load + allocate: {_median_ms(load, runs):9.3f} ms median of {runs}")
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _bench_input(rng, detail["shape"],
                                                             detail["dtype"]))
    try:
        interpreter.invoke()  # warm-up
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{args.file}: LiteRT cannot run the model on random inputs: "
                        f"{first_line(e)}") from None
    n = max(runs, 50)
    t = time.perf_counter()
    for _ in range(n):
        interpreter.invoke()
    mean = 1000 * (time.perf_counter() - t) / n
    shape = "x".join(str(d) for d in interpreter.get_input_details()[0]["shape"])
    print(f"LiteRT inference ({shape}): {mean:9.3f} ms mean of {n}")
    return 0


# --------------------------------------------------------------------- main
def _check_output(args):
    """`tfdc decode`: refuse an OUT that cannot be written, or that is IN
    itself (also through a link), before any work is done."""
    out = getattr(args, "output", None)
    if args.command != "decode" or out is None or out == STANDARD_OUTPUT:
        return
    source = getattr(args, "input", None)
    if source and os.path.exists(source) and os.path.exists(out) and os.path.samefile(source,
                                                                                       out):
        raise UsageError(f"{out}: is the input file {source}; give OUT a new path (writing it "
                         "would replace the packed file with the decoded one)")
    from tfdc.exporter import check_writable
    check_writable(out)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules:
        # tfdc trains and converts on Keras's TensorFlow backend, and a
        # .keras file loads on any backend: a KERAS_BACKEND=jax set for the
        # user's own work (or in ~/.keras/keras.json) must not stop it.
        os.environ["KERAS_BACKEND"] = "tensorflow"
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)  # a usage mistake: stdout stays for output
        return 2
    if sys.stdout is None:  # `>&-`: every print was an AttributeError traceback
        print(f"{_PROG}: error: standard output is closed: the command reports on it",
              file=sys.stderr)
        return EXIT_ERROR
    from tfdc.errors import BackendError, DatasetUnavailableError, FormatError
    caught = _catch_termination()
    stdout, sys.stdout = sys.stdout, _NamedStream(
        sys.stdout, "standard output", progress_only=args.command in ("compress", "demo") and
        getattr(args, "output", None) not in _STANDARD_OUTPUT_NAMES)
    try:
        _dash_is_standard_stream(args)
        _check_output(args)
        status = args.func(args)
        sys.stdout.flush()
        raise_if_signalled()  # one Python dropped (see note_signal)
        return status
    except Terminated as e:
        print(f"{_PROG}: terminated ({signal.Signals(e.signum).name})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of standard output left (`tfdc inspect m.tflite | head`):
        # nothing to report; stdout goes nowhere so exiting does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except UsageError as e:
        print(f"{_PROG}: error: {args.command}: {e} (see '{_PROG} {args.command} --help')",
              file=sys.stderr)
        return 2
    except (UserError, FormatError, DatasetUnavailableError, BackendError, OSError,
            ValueError, ImportError) as e:
        if os.environ.get("TFDC_DEBUG") or (
                isinstance(e, ImportError) and (e.name or "").split(".")[0] == "tfdc"):
            raise  # tfdc's own import broken (an install half-updated): not the user's mistake
        message = str(e) or type(e).__name__
        where = getattr(args, "file", None) or getattr(args, "input", None)
        if isinstance(e, FormatError):
            packed = getattr(args, "command", "") == "decode" or \
                _is_packed_path(where)
            what = "not a valid tfdc-packed file" if packed else "not a valid .tflite file"
            message = f"{where + ': ' if where else ''}{what}: {message}"
        elif isinstance(e, OSError) and e.filename:
            message = f"{e.filename}: {e.strerror or message}"
        if args.command in ("compress", "plan"):
            message = _as_options(message)
        if where == "/dev/stdin" and message.startswith("/dev/stdin: "):
            message = "standard input: " + message[len("/dev/stdin: "):]  # as the summary says
        print(f"{_PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout = stdout
        for signum, previous in caught.items():
            signal.signal(signum, previous)
        forget_signals()


# The arguments that read or write one .tflite file as it is, where "-" is
# the standard stream (it was a file named "-"). An input "-" is read as
# /dev/stdin; an output "-" stays "-" and is written to file descriptor 1
# as it is (`_write_output`): through /dev/stdout, a redirect to a file was
# replaced by a rename (an append lost what the file held).
STANDARD_OUTPUT = "-"
_STANDARD_INPUTS = {("pack", "input"), ("decode", "input"), ("inspect", "file")}
_STANDARD_OUTPUTS = {("pack", "output"), ("decode", "output"), ("compress", "output")}
# Standard output by another name is standard output too: replaced by a
# rename, a redirect to a file lost what the file held.
_STANDARD_OUTPUT_NAMES = {"-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"}


def _dash_is_standard_stream(args):
    """`args` with an input "-" as /dev/stdin and an output named as
    standard output as "-". Binary data from or to a terminal is refused,
    as gzip refuses it (it waited for input, or filled the screen), and a
    closed stream is named."""
    for command, name in _STANDARD_OUTPUTS:
        if args.command == command and getattr(args, name) in _STANDARD_OUTPUT_NAMES:
            setattr(args, name, STANDARD_OUTPUT)
            if command != "compress" and sys.stdout.isatty():
                raise UsageError("OUT is standard output, a terminal here: redirect it "
                                 "(> model.tflite) or give a file path")
    for command, name in _STANDARD_INPUTS:
        if args.command != command or getattr(args, name) != "-":
            continue
        if sys.stdin is None:
            raise UsageError("'-' is standard input, which is closed here: give a file path")
        if sys.stdin.isatty():
            raise UsageError("'-' is standard input, a terminal here: pipe a .tflite file into "
                             "it (< model.tflite) or give a file path")
        if not os.path.exists("/dev/stdin"):
            raise UsageError("'-' needs /dev/stdin, which this system lacks: give a file path")
        setattr(args, name, "/dev/stdin")


def _shown(path):
    """IN or OUT as a summary line names it."""
    return {STANDARD_OUTPUT: "standard output", "/dev/stdin": "standard input"}.get(path, path)


def _write_output(out, data):
    """`data` to OUT: a file written atomically, or standard output as it is
    for "-", every byte or an OSError naming it (a short write, a full
    disk, a reader that left)."""
    if out != STANDARD_OUTPUT:
        from tfdc.exporter import write_atomically
        write_atomically(out, data)
        return
    sys.stdout.flush()
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(sys.stdout.fileno(), view):]
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OSError(e.errno, f"cannot write: {e.strerror}", "standard output") from None


class _NamedStream:
    """A text stream whose write errors name it (`tfdc inspect m.tflite >
    /dev/full` said "[Errno 28] No space left on device" and no more).
    With `progress_only`, a reader that leaves (`tfdc compress ... | head`)
    is told of once on standard error and the command goes on without its
    progress: the product is the file OUT (compress stopped with status 1,
    nothing written and nothing said, after minutes of training)."""

    def __init__(self, stream, name, progress_only=False):
        self._stream, self._name, self._progress_only = stream, name, progress_only

    def _named(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            if not self._progress_only:
                raise
            self._progress_only = False  # told once; later writes go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            print(f"{_PROG}: standard output's reader left: going on without progress "
                  "(OUT is still written)", file=sys.stderr)
            return call(*args)
        except OSError as e:
            if e.filename is not None or e.errno is None:
                raise
            raise type(e)(e.errno, e.strerror, self._name) from None

    def write(self, text):
        return self._named(self._stream.write, text)

    def flush(self):
        return self._named(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _is_packed_path(path):
    """Whether the file at `path` carries a tfdc section entry (what a
    FormatError about it is then about), False if it cannot be read."""
    from tfdc.runtime import read_model_bytes
    from tfdc.unpack import has_section_entry
    try:
        return has_section_entry(read_model_bytes(path))
    except (OSError, TypeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
