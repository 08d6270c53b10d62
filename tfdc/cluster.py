"""Trained quantization by weight sharing (Deep Compression, sec. 3).

`ClusteredFineTuning` clusters each selected kernel's *nonzero* weights into at
most `2**bits` shared values (k-means in 1-D, `tfdc.kmeans`), then fine-tunes
the shared values (the centroids) with the normal Keras training loop.
`codebooks(model)` reads the shared values of any model back from its weights.
"""

import warnings

import keras
import numpy as np

from tfdc import kmeans
from tfdc.constraints import (TfdcConstraint, find_constraint, fit_began, fit_ended,
                              refuse_weight_averaging, shared_values, warn_constraints_skipped)
from tfdc.errors import require_tensorflow_backend
from tfdc.layers import bias_variable
from tfdc.select import iter_layers, select_kernels, selection_names
from tfdc.values import clustered_values, nonzero_values, to_numpy

DEFAULT_CONV_BITS = 8  # paper: 256 shared values for convolutions
DEFAULT_DENSE_BITS = 5  # paper: 32 shared values for fully connected layers
CENTROID_UPDATES = ("mean", "sum")
# Smallest positive *normal* float32: TensorFlow's CPU kernels flush subnormals
# to zero, so a subnormal nudge could silently become an exact zero.
_TINY = np.finfo(np.float32).tiny
_HALF_TINY = np.float32(2.0 ** -24)  # the smallest binary16 subnormal


def _in_xla_context():
    """True while tracing for XLA (`jit_compile=True`): XLA cannot compile
    TensorFlow's sparse matmul, so the constraint picks other operators."""
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except (ImportError, AttributeError):  # a TensorFlow without this helper
        return False


class ClusterConstraint(TfdcConstraint):
    """Variable constraint that keeps a kernel on its codebook.

    Runs inside the compiled train step, after the optimizer's per-weight
    update (Keras 3 optimizers assign `variable.constraint(variable)` right
    after applying gradients). It reads the members of every cluster, moves
    each centroid by their mean update (`centroid_update="mean"`: the new
    centroid is the mean of its members) or by the sum of their updates
    (`"sum"`, the paper's shared gradient), and writes the centroids back:
    each member gets exactly its centroid, every pruned position an exact 0.
    Three implementations of the same rule (equal up to float rounding: they
    add each cluster's members in different orders): on CPU, the fused op
    `TfdcClusterProject` (`tfdc.cluster_op`: one pass over the nonzeros, built
    at run time; set as `fused` by `ClusteredFineTuning`); where it is not
    available, two products with a fixed sparse one-hot matrix `expand`
    (`[size, k]`, one 1.0 per nonzero position, in the column of its
    cluster): `expand^T w` and `expand c'`; under `jit_compile=True`, which
    compiles neither, a gather and a segment sum over the nonzeros and a
    lookup in the `k + 1` entry table of centroids and 0.

    Not serialized: it is attached to the variable only (`variable.constraint`),
    never to the layer's `kernel_constraint`, so `.keras` saving is unaffected.
    """

    def __init__(self, positions, assignment, centroids, counts, size, update="mean",
                 inner=None):
        super().__init__(inner)  # replaced, not applied: the projection decides every value
        import tensorflow as tf
        # One 1.0 per nonzero position (row), in its cluster's column.
        positions64 = np.asarray(positions, dtype=np.int64)
        self.expand = tf.sparse.SparseTensor(
            indices=np.stack([positions64, np.asarray(assignment, dtype=np.int64)], axis=1)
            if positions64.size else np.zeros((0, 2), np.int64),
            values=np.ones(positions64.size, np.float32),
            dense_shape=[int(size), int(counts.size)])
        # The same map as index lists, for the XLA path.
        self.positions = tf.constant(np.asarray(positions, dtype=np.int32))
        self.assignment = tf.constant(np.asarray(assignment, dtype=np.int32))
        self._lookup = None  # kernel-sized, so built only if the XLA path runs
        self.centroids = centroids  # a non-trainable keras.Variable, float32 [k]
        self.num_clusters = int(counts.size)
        self.inv_counts = tf.constant(1.0 / counts, dtype=tf.float32)
        self.counts = tf.constant(counts, dtype=tf.float32)
        self.update = update
        self.size = int(size)
        # Set by ClusteredFineTuning from `model.jit_compile`, in case the
        # XLA context cannot be detected (it relies on a TensorFlow internal).
        self.jit_compile = False
        self.owner = None  # the ClusteredFineTuning that installed it
        # The loaded `tfdc.cluster_op` library, set by ClusteredFineTuning
        # when training runs on CPU; None: TensorFlow's sparse matmul.
        self.fused = None
        self.scale = self.inv_counts if update == "mean" else self.counts

    def __call__(self, w):
        import tensorflow as tf
        w = tf.convert_to_tensor(w)
        if self.num_clusters == 0:
            return tf.zeros_like(w)
        old = tf.convert_to_tensor(self.centroids)
        xla = self.jit_compile or _in_xla_context()
        if self.fused is not None and not xla and w.dtype == tf.float32:
            dense, new = self.fused.tfdc_cluster_project(
                w, self.positions, self.assignment, self.scale, old, mean=self.update == "mean")
            self.centroids.assign(new)
            return dense
        flat = tf.reshape(tf.cast(w, tf.float32), [-1])
        if xla:
            # XLA has no sparse matmul but fuses gathers and segment sums.
            total = tf.math.unsorted_segment_sum(tf.gather(flat, self.positions),
                                                 self.assignment, self.num_clusters)
        else:
            # Outside XLA, TensorFlow's CPU gather / unsorted_segment_sum /
            # scatter_nd and even a kernel-sized subtraction cost several
            # times what sparse_dense_matmul does: the step is two of those.
            # Sum of each cluster's members (pruned rows are not in `expand`).
            total = tf.reshape(tf.sparse.sparse_dense_matmul(
                self.expand, flat[:, None], adjoint_a=True), [-1])
        if self.update == "mean":
            # old + mean(w_i - old) == mean(w_i): the members' mean update.
            new = tf.cast(total * self.inv_counts, old.dtype)
        else:
            # old + sum(w_i - old): the paper's summed member updates.
            new = old + tf.cast(total - self.counts * tf.cast(old, tf.float32), old.dtype)
        # A centroid must never become an exact zero (it would merge with the
        # pruned weights): keep its previous value instead.
        new = tf.where(tf.equal(new, 0.0), old, new)
        self.centroids.assign(new)
        if xla:
            # A lookup in a k+1 entry table (the last entry is the pruned 0).
            dense = tf.gather(tf.concat([new, tf.zeros([1], new.dtype)], 0), self._xla_lookup())
        else:
            dense = tf.sparse.sparse_dense_matmul(self.expand, new[:, None])
        return tf.reshape(tf.cast(dense, w.dtype), tf.shape(w))

    def _xla_lookup(self):
        """Cluster index of every kernel position, `k` for pruned ones."""
        if self._lookup is None:
            import tensorflow as tf
            # Eager, so that every traced step (and retrace) captures it.
            with tf.init_scope():
                lookup = np.full(self.size, self.num_clusters, np.int32)
                lookup[self.positions.numpy()] = self.assignment.numpy()
                self._lookup = tf.constant(lookup)
        return self._lookup

    def get_config(self):
        return {}


def clustered_before_pruning(named):
    """`"name (n shared values)"` for each kernel of `named` (`(name,
    variable)` pairs) that is clustered already and not held to a codebook
    (kernels with a `ClusteredFineTuning` still attached are left out), for
    `warn_clustered_before_pruning` once the fit's callbacks have begun."""
    found = []
    for name, variable in named:
        if find_constraint(variable, ClusterConstraint) is not None:
            continue
        values = clustered_values(variable)
        if values is not None:
            found.append(f"{name} ({values} shared values)")
    return found


def warn_clustered_before_pruning(found, who, model, params):
    """Warn where a pruning callback (`who`) starts on the kernels `found`
    clustered already (`clustered_before_pruning`): the fit trains every
    kept weight, so the shared values drift apart and the packed file
    grows back, without a word before. Not where a `ClusteredFineTuning`
    is in the same fit (of `model`, `params`: called once every callback's
    `on_train_begin` has run): it clusters them again, as in a fit resumed
    from a checkpoint written while clustering."""
    from tfdc.constraints import callbacks_in_fit
    if not found or any(isinstance(c, ClusteredFineTuning)
                        for c in callbacks_in_fit(model, params)):
        return
    from tfdc.errors import listed
    warnings.warn(
        f"{who}: kernels clustered already ({listed(found, 4)}): this fit trains every "
        "kept weight, so the shared values drift apart and the packed file grows back. "
        "Prune first, then cluster (Deep Compression's order); a tfdc.ClusteredFineTuning "
        "after the pruning clusters them again.", stacklevel=4)


def release_interrupted(variables, params, who):
    """Detach the codebooks that a `ClusteredFineTuning` whose fit stopped
    with an exception (Ctrl-C, a callback's error: its `on_train_end`
    never ran) left on `variables`, for the fit of `params` that `who` is
    starting: a retry of that fit was refused as "still clustered" by a
    `detach_at_end=False` the user never gave. A `ClusteredFineTuning`
    in the new fit clusters them again."""
    owners = {}
    for variable in variables:
        c = find_constraint(variable, ClusterConstraint)
        began = getattr(c.owner, "_tfdc_fit", (None, None)) if c is not None else (None, None)
        if began[0] is not None and began[1] is not params:  # began another fit, never ended
            owners.setdefault(id(c.owner), (c.owner, []))[1].append(variable.path)
    for owner, paths in owners.values():
        owner.detach()
        fit_ended(owner)
        warnings.warn(f"{who}: the codebooks of a ClusteredFineTuning whose fit stopped with an "
                      f"exception were still attached ({', '.join(paths)}): removed. The weights "
                      "keep their shared values until trained; a ClusteredFineTuning in this fit "
                      "clusters them again.", stacklevel=3)


def _check_bits(bits, layer_name):
    low, high = kmeans.BITS_RANGE
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"layer {layer_name!r}: bits must be an integer in {low}..{high}, "
                         f"got {bits!r}")
    if not low <= int(bits) <= high:
        raise ValueError(f"layer {layer_name!r}: bits must be in {low}..{high} "
                         f"({2 ** low} to {2 ** high} shared values), got {bits}")


def _layers_feeding_batchnorm(model):
    """Layers whose output, with no activation of their own, is consumed
    directly by a BatchNormalization: the converter folds it into their
    kernel. (After a ReLU it cannot: `Conv(activation="relu")` then
    BatchNormalization keeps its kernel, and was refused after training.)"""
    feeding = {}
    for layer in iter_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                history = getattr(tensor, "_keras_history", None)
                if history is not None and getattr(history.operation, "activation", None) in (
                        None, keras.activations.linear):
                    feeding[id(history.operation)] = layer.name
    return feeding


def to_binary16(values):
    """float32 `values` rounded to the nearest binary16 values (as float32).
    Values beyond binary16's range are kept as they are, and a nonzero value
    that would round to zero becomes the smallest binary16 subnormal of its
    sign, so zeros (pruned weights) stay exactly the zeros there were."""
    value = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore"):
        half = value.astype(np.float16).astype(np.float32)
    half = np.where((half == 0) & (value != 0), np.copysign(_HALF_TINY, value), half)
    return np.where(np.isfinite(half), half, value).astype(np.float32)


def _cluster_kernel(value, bits, init, seed, max_iter, fp16=False):
    """Codebook of one kernel. Returns (positions, assignment, centroids f32, counts).
    `fp16`: round the centroids to binary16 (`to_binary16`)."""
    flat = np.asarray(value, dtype=np.float32).ravel()
    positions = np.flatnonzero(flat).astype(np.int32)
    if positions.size == 0:
        return positions, positions.copy(), np.zeros(0, np.float32), np.zeros(0)
    members = flat[positions].astype(np.float64)
    # With at most 2**bits distinct nonzero values (e.g. resuming from a
    # clustered checkpoint) the codebook is those values, exactly.
    centroids = kmeans.cluster_values(members, 2 ** int(bits), init=init, seed=seed,
                                      max_iter=max_iter)
    assignment = kmeans.assign(members, centroids)
    used, assignment = np.unique(assignment, return_inverse=True)  # drop empty clusters
    centroids = centroids[used].astype(np.float32)
    centroids[centroids == 0] = _TINY  # a centroid of nonzero weights stays nonzero
    if fp16:  # rounding may merge two centroids; the codebook keeps both entries
        centroids = to_binary16(centroids)
    counts = np.bincount(assignment, minlength=centroids.size).astype(np.float64)
    return positions, assignment.astype(np.int32), centroids, counts


class ClusteredFineTuning(keras.callbacks.Callback):
    """Share weights by k-means clustering, then fine-tune the shared values.

    At the start of `fit`, the nonzero weights of every selected kernel are
    clustered into at most `2**bits` centroids (zeros are not a cluster: they
    stay exact and cost nothing) and each weight is replaced by its centroid.
    During training, a variable constraint runs after every optimizer step
    inside the compiled train step and moves every centroid by the *mean*
    (default) or the *sum* of its members' updates, then writes it back to all
    members and writes exact zeros to the pruned positions. So after every
    step each kernel has at most `2**bits` distinct nonzero values, the zero
    mask is exactly the one at the start, and no nonzero weight becomes 0 (a
    centroid that would land on exactly 0.0 keeps its previous value).

    What the centroids do (the paper: dL/dC_k = sum_ij dL/dW_ij 1(I_ij = k)):

    * SGD with `centroid_update="sum"`: every member moves by -lr * g_ij, so
      the centroid moves by -lr * sum of its members' gradients: exactly the
      paper's rule.
    * SGD with `centroid_update="mean"` (default): -lr/n_k * sum of the
      gradients, i.e. the paper's rule with a per-cluster learning rate
      lr / n_k. This is the default because it does not depend on cluster
      size: with "sum", a 5,000-member cluster takes a 5,000x larger step, and
      under any adaptive optimizer (whose per-weight steps are ~lr each) the
      sum of n_k steps makes large clusters diverge.
    * Adam / RMSprop / momentum: each member keeps its own optimizer slots,
      computed from its own gradients (which all sit at the same weight value);
      the centroid moves by the mean (or sum) of the members' optimizer steps.
      With plain gradients in place of the per-weight steps this reduces to
      the rule above, so it is the paper's shared-gradient update with the
      optimizer's preconditioning applied member-wise.
    * Weight decay (AdamW, ...) is applied to members before the constraint
      and therefore shrinks the centroid, as decay on C_k would.

    Batch normalization: TFLite folds a BatchNormalization into the preceding
    convolution at conversion time, rescaling every output channel and
    destroying the codebook; a selected layer that feeds a BatchNormalization
    is refused, fold it first with `tfdc.fold_batchnorm(model)`.

    With `tfdc.GradualPruning` or `tfdc.StructuredPruning` (or both) in the
    same `fit` (in any order), the weights are clustered once every pruning
    schedule has ended (after its `end_step`), keeping the pruned zeros, and
    fine-tuned for the rest of the fit: `fit(x, y, epochs=10,
    callbacks=[tfdc.GradualPruning(0.9, end_step=6 * steps_per_epoch),
    tfdc.ClusteredFineTuning(bits=5)])`. If a schedule ends at the fit's
    last step (`end_step`'s default), or the fit stops early there, the
    weights are clustered at the end without fine-tuning, with a warning; a
    schedule that ends after the fit is refused before training. A model
    that `fit` builds in its first step (a subclassed model never called) is
    clustered after that step.

    Resuming: a kernel that already has at most `2**bits` distinct nonzero
    values (e.g. a model reloaded from a `.keras` checkpoint written during
    clustering) gets exactly those values as its codebook (each rounded to
    binary16 with `centroid_fp16`, the default; a checkpoint written after a
    fit, or at its last epoch's end by a `ModelCheckpoint` (listed before or
    after this callback, where the fit's steps are known: the values are
    rounded at its last step), already holds binary16 values, which stay as
    they are; so does one at an epoch an `EarlyStopping` listed before it
    stops at).

    Args:
        bits: bits per shared value: an int for every selected layer, `None`
            for the paper's defaults (8 for convolutions, 5 for dense and
            embeddings), or a dict mapping layer names / regular expressions
            to bits (only matched layers are clustered).
        init: centroid initialisation, one of `'linear'` (paper default),
            `'density'`, `'random'`, `'kmeans++'`, `'optimal'` (exact DP);
            Lloyd iterations follow; see `tfdc.kmeans`.
        centroid_update: `'mean'` or `'sum'` of the members' updates (above).
        exclude: layer names or regular expressions never to cluster.
        seed: seed for the `'random'` and `'kmeans++'` initialisations.
        max_iter: maximum Lloyd iterations.
        detach_at_end: remove the constraints when `fit` ends (default True);
            otherwise they stay until `tfdc.strip(model)`, in memory only:
            a `.keras` file keeps the pruning masks but not the weight
            sharing, so a model loaded from it trains its shared values
            apart (cluster it again with a `ClusteredFineTuning` in that
            fit: a kernel with at most `2**bits` values keeps them).
        fused_op: on CPU, use the fused op of `tfdc.cluster_op` (built once
            per TensorFlow version, about 15 s, on first use; falls back to
            TensorFlow's sparse matmul with a warning if it cannot be built).
        bias_fp16: at the fit's last step (or the end of an epoch where it
            stops early), round the biases of the clustered layers to the nearest
            binary16 value (kept as float32; relative change at most
            2**-11, far below what moves the model's error). The
            packer then stores them losslessly in two bytes' worth of
            information instead of four: about 630 B less for LeNet-300-100.
            `False` keeps them as trained.
        centroid_fp16: round the shared values to binary16 the same way, when
            they are first clustered and again as the biases (default
            True). The packer then stores each codebook in 16-bit keys:
            half the bytes of float32 centroids, which matters most for
            small kernels (a 3x3 depthwise kernel's codebook can outweigh
            its indices). `False` keeps float32 centroids.

    Example:

    ```python
    import numpy as np, tfdc
    x, y = np.random.rand(512, 28, 28).astype("float32"), np.random.randint(0, 10, 512)
    model = tfdc.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tfdc.ClusteredFineTuning(bits=5)])
    print({k: len(v["centroids"]) for k, v in tfdc.codebooks(model).items()})
    # {'lenet_300_100/fc1/kernel': 32, 'lenet_300_100/fc2/kernel': 32, 'lenet_300_100/fc3/kernel': 32}
    ```

    Logs `distinct_values` (the largest number of distinct nonzero values of
    any clustered kernel) at the end of every epoch.
    """

    def __init__(self, bits=None, init="linear", centroid_update="mean", exclude=(), seed=None,
                 max_iter=300, detach_at_end=True, fused_op=True, bias_fp16=True,
                 centroid_fp16=True):
        super().__init__()
        require_tensorflow_backend("tfdc.ClusteredFineTuning")
        if init not in kmeans.INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(kmeans.INITS)}")
        if centroid_update not in CENTROID_UPDATES:
            raise ValueError(f"centroid_update must be 'mean' or 'sum', got {centroid_update!r}")
        if isinstance(bits, dict):
            for name, value in bits.items():
                _check_bits(value, name)
        elif bits is not None:
            _check_bits(bits, "(all layers)")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.bits = bits
        self.init = init
        self.centroid_update = centroid_update
        self.exclude = exclude
        self.seed = seed
        self.max_iter = max_iter
        self.detach_at_end = detach_at_end
        self.fused_op = fused_op
        self.bias_fp16 = bool(bias_fp16)
        self.centroid_fp16 = bool(centroid_fp16)
        self.selections = []
        self._constraints = []

    # -- selection --------------------------------------------------------
    def _select(self, model):
        if self.bits is None:
            sels = select_kernels(model, True, self.exclude, who="ClusteredFineTuning")
            for s in sels:
                s.value = DEFAULT_CONV_BITS if s.is_conv else DEFAULT_DENSE_BITS
        else:
            sels = select_kernels(model, self.bits, self.exclude, validate=_check_bits,
                                  who="ClusteredFineTuning")
        feeding = _layers_feeding_batchnorm(model)
        for s in sels:
            if id(s.layer) in feeding:
                raise ValueError(
                    f"layer {s.layer.name!r} feeds BatchNormalization {feeding[id(s.layer)]!r}: "
                    "TFLite folds the normalization into this layer's kernel at conversion, "
                    "which destroys the shared values. Fold it first: "
                    "model = tfdc.fold_batchnorm(model), or exclude the layer.")
        return sels

    def quantize(self, model):
        """Cluster the selected kernels of `model` and snap every weight to its
        centroid (no fine-tuning). Returns `{variable path: codebook}` with
        `positions`, `assignment`, `centroids` and `counts` as NumPy arrays
        (for two variables of one path, the layer's path in the model and
        the attribute: `tfdc.select.selection_names`)."""
        return self._quantize(model, self._select(model))

    def _quantize(self, model, selections):
        self.selections = selections
        out = {}
        for name, s in zip(selection_names(model, selections), selections):
            value = to_numpy(s.variable)
            pos, asg, cen, cnt = _cluster_kernel(value, s.value, self.init, self.seed,
                                                 self.max_iter, self.centroid_fp16)
            flat = np.zeros(value.size, np.float32)
            flat[pos] = cen[asg]
            s.variable.assign(flat.reshape(value.shape).astype(value.dtype))
            out[name] = dict(positions=pos, assignment=asg, centroids=cen, counts=cnt)
        return out

    # -- callback hooks ---------------------------------------------------
    def on_train_begin(self, logs=None):
        refuse_weight_averaging(self.model, "tfdc.ClusteredFineTuning")
        fit_began(self)
        self._started = False
        self._told_left = False
        self._schedules = []
        self._told = set()
        self._warned = False
        self._start_step = None
        self._epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._maybe_start()

    def on_train_batch_begin(self, batch, logs=None):
        self._maybe_start()

    def on_train_batch_end(self, batch, logs=None):
        # A model Keras builds in its first train step (a subclassed model
        # never called) is clustered once that step has run.
        self._maybe_start()
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if self._started and self.selections and steps and epochs and \
                batch + 1 >= steps and self._epoch == epochs - 1:
            # The fit's last step: rounded before any callback's epoch end,
            # so that a ModelCheckpoint listed before this one saves the
            # file the fit leaves too (it saved unrounded biases, 2.7 %
            # larger packed).
            self._round_to_binary16()

    def _maybe_start(self):
        """Cluster now, unless the model is not built yet or a pruning
        callback in the same fit (`GradualPruning`, `StructuredPruning`) has
        not finished its schedule."""
        if self._started or not self.model.built:
            return
        from tfdc.prune import active_schedules
        schedules = active_schedules(self.model, self.params) or self._schedules
        if schedules:
            self._schedules = schedules
            if not all(p.schedule_known for p in schedules):
                return  # a schedule is resolved when its first epoch begins
            waiting = [p for p in schedules if not p.ramp_ended()]
            if waiting:
                for pruning in waiting:
                    self._check_ramp_ends_in_this_fit(pruning)
                return
        self._start()

    def _check_ramp_ends_in_this_fit(self, pruning):
        if id(pruning) in self._told:
            return
        self._told.add(id(pruning))
        name = type(pruning).__name__
        end, fit_end = pruning.end_step, pruning.fit_end_step
        if fit_end is not None and end > fit_end:
            raise ValueError(
                f"ClusteredFineTuning clusters once {name}'s schedule has ended (end_step "
                f"{end:,}), but this fit ends at step {fit_end:,}: give {name} an "
                f"end_step before {fit_end:,} to prune and cluster in this fit, or run "
                "ClusteredFineTuning in a later fit.")
        if fit_end is not None and end == fit_end and not self._warned:
            self._warn_no_fine_tuning(pruning)

    def _warn_no_fine_tuning(self, pruning, stopped=False):
        self._warned = True
        name = type(pruning).__name__
        suggestion = pruning.begin_step + 3 * (pruning.end_step - pruning.begin_step) // 4
        when = (f"this fit stopped at step {self._start_step:,}, as {name}'s schedule "
                "ended (stopped early?)" if stopped else
                f"{name}'s schedule ends at the last step of this fit (step "
                f"{pruning.end_step:,}" + ("" if pruning.end_step_given
                                           else "; end_step's default is the fit's end") + ")")
        warnings.warn(
            f"ClusteredFineTuning: {when}, so the weights are clustered after it with no step "
            f"left to fine-tune the shared values. Give {name} an end_step before "
            f"{pruning.end_step:,} (e.g. end_step={suggestion:,}) to prune and then fine-tune "
            "in one fit, or fine-tune with ClusteredFineTuning in a further fit.", stacklevel=3)

    def _start(self):
        model = self.model
        self._started = True
        self._start_step = int(to_numpy(model.optimizer.iterations))
        selections = self._select(model)
        for s in selections:
            other = find_constraint(s.variable, ClusterConstraint)
            if other is not None and other.owner is not self and \
                    getattr(other.owner, "params", None) is self.params:
                raise ValueError(f"two ClusteredFineTuning callbacks in one fit cluster layer "
                                 f"{s.layer.name!r}: give one, with a dict of per-layer bits")
        # In selection order, not by name: two kernels of one variable path
        # (layers of one name in two nested models) took each other's book.
        books = self._quantize(model, selections)
        self._warn_user_constraints()
        strategy = model.distribute_strategy
        fused = self._fused_op(model)
        with strategy.scope():
            for (name, b), s in zip(books.items(), self.selections):
                if b["centroids"].size == 0:
                    continue  # an all-zero kernel has nothing to share
                cvar = keras.Variable(b["centroids"], trainable=False, dtype="float32",
                                      name=name.replace("/", "_") + "_centroids")
                inner = s.variable.constraint
                if isinstance(inner, ClusterConstraint):
                    # An earlier fit's (detach_at_end=False), replaced: kept
                    # under this one, it came back when this fit detached
                    # and put the old codebook's clusters back.
                    inner = inner.inner
                c = ClusterConstraint(b["positions"], b["assignment"], cvar, b["counts"],
                                      int(np.prod(s.variable.shape)), self.centroid_update,
                                      inner=inner)
                c.owner = self
                c.jit_compile = bool(getattr(model, "jit_compile", False))
                c.fused = fused
                s.variable.constraint = c
                self._constraints.append((s.variable, c))
        # fit() traced (or reused) the train step before this hook: retrace it
        # so that the constraints are part of the compiled step.
        model.make_train_function(force=True)

    def _warn_user_constraints(self):
        """A warning naming the clustered kernels that carry the user's own
        constraint (MaxNorm, NonNeg, ...): a shared value is the mean of its
        members' updates, and a per-weight constraint would split them, so
        it is not applied while clustered (it was broken silently)."""
        from tfdc.constraints import user_constraint
        from tfdc.layers import kernel_name
        found = {}
        for s in self.selections:
            user = user_constraint(s.variable)
            if user is not None:
                found[kernel_name(s.layer, s.attr)] = type(user).__name__
        if found:
            listed = ", ".join(f"{name} ({kind})" for name, kind in found.items())
            warnings.warn(
                f"ClusteredFineTuning: the constraints of {listed} are not applied while the "
                "weights are shared (a per-weight constraint would split the shared values); "
                "the clustered weights may break them. tfdc.strip puts them back on the "
                "variables.", stacklevel=4)

    def _fused_op(self, model):
        """The fused CPU op when this run trains on CPU without XLA, else None
        (the op has no GPU or XLA kernel; those runs use TensorFlow's ops)."""
        import tensorflow as tf
        if not self.fused_op or getattr(model, "jit_compile", False):
            return None
        if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
            return None
        from tfdc import cluster_op
        return cluster_op.load()

    def on_epoch_end(self, epoch, logs=None):
        if not (self._started and self.selections):
            return
        distinct = self._enforce_codebooks(epoch)
        if (self.params and epoch + 1 == self.params.get("epochs")) or \
                getattr(self.model, "stop_training", False):
            # The fit's last epoch (or one an EarlyStopping listed before
            # this callback ends it at): a ModelCheckpoint after this
            # callback saves the file as the fit leaves it (on_train_end
            # comes later).
            self._round_to_binary16()
        if logs is not None:
            logs["distinct_values"] = max(
                distinct[id(s.variable)] if id(s.variable) in distinct
                else shared_values(s.variable).size for s in self.selections)

    def _enforce_codebooks(self, epoch):
        """Project a kernel that left its codebook back onto it (each
        centroid the mean of its members, as a step does), with a warning
        (once a fit): the projection is the variables' constraint, which the
        optimizer applies, and a train step that updates the weights some
        other way (a custom `train_step` assigning them itself) skips it.
        Returns `{id(variable): distinct nonzero values}` of the kernels it
        checked, as they are now (the epoch's `distinct_values` log)."""
        left, distinct = {}, {}
        for variable, c in self._constraints:
            if variable.constraint is not c:
                continue
            nonzero = nonzero_values(variable)
            count = np.unique(nonzero).size
            if nonzero.size > c.positions.shape[0] or count > c.num_clusters:
                left[variable.path] = count
                variable.assign(c(variable))
                count = shared_values(variable).size
            distinct[id(variable)] = count
        if left and not self._told_left:
            self._told_left = True
            listed = ", ".join(f"{name}: {n:,} values" for name, n in left.items())
            warn_constraints_skipped(
                "ClusteredFineTuning", epoch,
                f"kernels held more distinct values than their codebooks ({listed})",
                "shared values", "They are put back on their codebooks at the end of each "
                "epoch, and trained freely in between.")
        return distinct

    def on_train_end(self, logs=None):
        fit_ended(self)
        if not self._started and self.model.built:
            self._finish_unstarted()
        elif self._started and self._schedules and not self._warned and \
                0 < int(to_numpy(self.model.optimizer.iterations)) == \
                self._start_step:
            # Clustered at a schedule's end, and the fit stopped right there
            # (EarlyStopping, stop_training) before its planned end. (Still at
            # 0: the optimizer never stepped, a custom train_step that updates
            # the weights itself, told of at each epoch's end; no end_step
            # would help.)
            self._warn_no_fine_tuning(max(self._schedules, key=lambda p: p.end_step),
                                      stopped=True)
        if self._started:
            self._round_to_binary16()  # again: a fit stopped early
            for selection in self.selections:  # for tfdc.strip's check (tfdc.export)
                selection.variable._tfdc_shared_values = min(
                    len(shared_values(selection.variable)), 2 ** selection.value)
        if self.detach_at_end:
            self.detach()

    def _round_to_binary16(self):
        """Round what `bias_fp16` and `centroid_fp16` ask for (a second
        time changes nothing), in the layers whose kernels are still
        clustered: weights set from elsewhere since (an EarlyStopping
        listed before this callback restoring an epoch before clustering)
        stay exactly as they are."""
        clustered = [s for s in self.selections
                     if shared_values(s.variable).size <= 2 ** s.value]
        if self.bias_fp16:
            for layer in {id(s.layer): s.layer for s in clustered}.values():
                bias = bias_variable(layer)
                if bias is not None and bias.dtype == "float32":
                    bias.assign(to_binary16(to_numpy(bias.value)))
        if self.centroid_fp16:
            # Rounding is a function of the value, so a kernel rounded
            # element by element keeps its members equal to their centroid.
            for s in clustered:
                s.variable.assign(to_binary16(to_numpy(s.variable)))
            for _, c in self._constraints:  # still attached when detach_at_end=False
                c.centroids.assign(to_binary16(to_numpy(c.centroids)))

    def _finish_unstarted(self):
        """The fit ended before clustering began: a pruning callback in the
        same fit pruned until its last step (or never finished its
        schedule)."""
        if not self._schedules:
            return  # the fit ran no step
        unfinished = [p for p in self._schedules if not p.ramp_ended()]
        if not unfinished:
            self._started = True
            self.quantize(self.model)  # shared values and kept zeros, not fine-tuned
            if not self._warned:
                self._warn_no_fine_tuning(max(self._schedules, key=lambda p: p.end_step))
        else:
            pruning = unfinished[0]
            warnings.warn(
                f"ClusteredFineTuning did nothing: it clusters once {type(pruning).__name__}'s "
                f"schedule has ended (end_step {pruning.end_step:,}), and this fit ended at "
                f"step {pruning.step:,}.", stacklevel=2)

    def detach(self):
        """Remove this callback's constraints (restoring any they replaced)."""
        for variable, c in self._constraints:
            if variable.constraint is c:
                variable.constraint = c.inner
        self._constraints = []
        if self.model is not None and getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)  # the traced step holds the constraints


def codebooks(model, targets=True, exclude=()):
    """The shared values of every kernel of `model`, read from its weights.

    Works on any model (clustered or not). Zeros are not part of a codebook.

    Returns:
        `{variable path (`tfdc.select.selection_names`): {"centroids":
        sorted distinct nonzero values,
        "counts": how many weights hold each, "zeros": number of zeros,
        "size": number of weights}}`.
    """
    out = {}
    selections = select_kernels(model, targets, exclude)
    for name, s in zip(selection_names(model, selections), selections):
        v = to_numpy(s.variable).ravel()
        centroids, counts = np.unique(v[v != 0], return_counts=True)
        out[name] = {"centroids": centroids, "counts": counts,
                       "zeros": int(v.size - counts.sum()), "size": int(v.size)}
    return out

