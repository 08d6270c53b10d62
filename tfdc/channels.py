"""Which output units of a model are removed together: channel groups.

Removing output unit j of a Dense layer (channel j of a convolution) is only
possible together with everything else that carries that channel: the
BatchNormalization and depthwise convolution it passes through, the input
rows of every layer that reads it, and, where branches meet in a residual
`Add`, the same channel of every other branch. `channel_groups(model)` walks
the Keras graph once and returns these sets as `ChannelGroup`s; both
`tfdc.StructuredPruning` (which masks whole groups during training) and
`tfdc.shrink` (which rebuilds the model without them) work on them.

A channel of a group counts as removed when every weight that produces it is
exactly zero: the kernel columns and biases of its producers, the gamma and
beta of each BatchNormalization and the depthwise kernel and bias on its way.
Its value at every reader is then exactly 0 (all activations on the way map
0 to 0, see `tfdc.layers.zero_preserving_activation`), so dropping it
changes no output. The per-kind facts (which axis of a kernel is the output,
which layers pass channels through) come from `tfdc.layers`.

Example:

```python
import keras
from tfdc.channels import channel_groups
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                          keras.layers.Dense(3, name="out")])
for group in channel_groups(model).groups:
    print(group.name, group.size, group.fixed)
# input 8 is a model input
# fc1 16 None
# out 3 feeds the model output
```
"""

import dataclasses
import math

import keras
import numpy as np

from tfdc.layers import (channel_role, constraint_slot, graph_of, kind_of,
                         zero_preserving_activation)
from tfdc.values import to_numpy

__all__ = ["ChannelGroup", "ChannelAnalysis", "channel_groups", "graph_of"]


# Why a channels_first layer keeps its units (`tfdc.units`' note, and the
# refusals of tfdc.StructuredPruning): the channel axis is the last one here.
CHANNELS_FIRST = "channels_first: tfdc removes the channels of channels_last layers only"


def is_channels_first(layer):
    """Whether `layer` is a Dense / Conv kind with data_format="channels_first"."""
    return kind_of(layer) is not None and \
        getattr(layer, "data_format", None) == "channels_first"


@dataclasses.dataclass
class ChannelGroup:
    """Channels that exist, and are removed, together.

    Attributes:
        size: number of channels.
        producers: layers whose kernel columns (`out_axis`) and bias create
            these channels (several when branches meet in a merge).
        consumers: `(layer, repeat)` of layers whose kernel rows (`in_axis`)
            read them; `repeat > 1` after a `Flatten`, whose output holds
            `repeat` copies of the channels (position-major).
        channelwise: BatchNormalization and depthwise layers on the way,
            whose per-channel weights follow the channels.
        read: the Keras tensors of the group that consumers read.
        fixed: why the channels cannot be removed (they feed the model
            output, a layer that mixes channels, ...), or None.
    """

    size: int
    producers: list = dataclasses.field(default_factory=list)
    consumers: list = dataclasses.field(default_factory=list)
    channelwise: list = dataclasses.field(default_factory=list)
    read: list = dataclasses.field(default_factory=list)
    fixed: object = None

    @property
    def name(self):
        """The producers' layer names joined by "+" (or "input")."""
        return "+".join(layer.name for layer in self.producers) or "input"

    def removed(self):
        """Boolean array: True where channel j is removed (all its producing
        weights are exactly 0, see the module docstring). A fixed group
        removes nothing."""
        out = np.zeros(self.size, dtype=bool)
        if self.fixed is not None or not self.producers:
            return out
        out[:] = True
        for variable, axis in self.producing_slices():
            w = np.moveaxis(to_numpy(variable), axis, -1)
            out &= ~np.any(w.reshape(-1, self.size) != 0, axis=0)
        return out

    def producing_slices(self):
        """`[(variable, axis)]`: every variable whose slice `j` along `axis`
        produces channel j (and is zeroed, or masked, to remove it)."""
        return [(variable, axis) for variable, axis, _ in self.producing_slots()]

    def producing_slots(self):
        """`producing_slices` with each variable's constraint slot: `[(variable,
        axis, slot)]`, `slot` the `(owner, attribute)` holding its constraint
        (`kernel_constraint`, `bias_constraint`, `gamma_constraint`, ...: what
        the layer's config saves), or None."""
        out = []

        def add(layer, attr, axis):
            variable = getattr(layer, attr, None)
            if variable is not None:
                out.append((variable, axis, constraint_slot(layer, attr)))

        for layer in self.producers:
            add(layer, "kernel", kind_of(layer).out_axis)
            add(layer, "bias", 0)
        for layer in self.channelwise:
            if kind_of(layer) is not None:  # depthwise
                add(layer, "kernel", kind_of(layer).out_axis)
                add(layer, "bias", 0)
            else:  # normalization (without `scale` the group is fixed)
                add(layer, "gamma", 0)
                add(layer, "beta", 0)
        return out


@dataclasses.dataclass
class ChannelAnalysis:
    """`channel_groups`' result.

    Attributes:
        groups: every `ChannelGroup`, in graph order.
        out_group: `id(layer)` -> the group a producer creates.
        in_group: `id(layer)` -> `(group, repeat)` a consumer reads.
        channel_group: `id(layer)` -> the group a BatchNormalization or
            depthwise layer passes through.
        input_shapes: `id(layer)` -> the shape of the first input of each
            of its calls (a list: a shared layer runs once per call).
        output_shapes: `id(layer)` -> the output shape of each of its calls.
        bn_after: `id(producer)` -> the BatchNormalization that is the only
            reader of its output (for importance: the folded kernel's norm).
    """

    groups: list
    out_group: dict
    in_group: dict
    channel_group: dict
    input_shapes: dict
    output_shapes: dict
    bn_after: dict

    def prunable(self):
        """The groups that are not fixed."""
        return [g for g in self.groups if g.fixed is None]


class _Groups:
    """Union-find over channel groups."""

    def __init__(self):
        self.parent, self.data = [], []

    def new(self, size, fixed=None):
        self.parent.append(len(self.parent))
        self.data.append(ChannelGroup(size=size, fixed=fixed))
        return len(self.parent) - 1

    def find(self, g):
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        keep, gone = (a, b) if a < b else (b, a)
        k, o = self.data[keep], self.data[gone]
        k.producers += o.producers
        k.consumers += o.consumers
        k.channelwise += o.channelwise
        k.read += o.read
        k.fixed = k.fixed or o.fixed
        self.parent[gone] = keep
        return keep

    def fix(self, g, reason):
        d = self.data[self.find(g)]
        d.fixed = d.fixed or reason


def _last_dim(tensor):
    shape = getattr(tensor, "shape", None)
    return shape[-1] if shape is not None and len(shape) else None


def channel_groups(model):
    """Group the channels of `model` that must be removed together.

    Args:
        model: a built Sequential (started with `keras.Input`) or functional
            Keras model. Layers that tfdc does not know (nested models,
            Reshape, Concatenate, attention, ...) keep every channel they
            read or write: their groups are fixed.

    Returns:
        A `ChannelAnalysis`.

    Raises:
        ValueError: a subclassed or unbuilt model.
    """
    graph = graph_of(model)
    g = _Groups()
    space = {}  # id(tensor) -> (group, repeat)
    out_group, in_group, channel_group, shapes, bn_after = {}, {}, {}, {}, {}
    in_shapes = {}
    readers = {}
    nodes = [n for d in sorted(graph._nodes_by_depth, reverse=True)
             for n in graph._nodes_by_depth[d]]
    for node in nodes:
        for t in node.input_tensors:
            readers.setdefault(id(t), []).append(node.operation)

    def tensor_space(t, reason):
        if id(t) not in space:  # a tensor from outside the graph
            space[id(t)] = (g.new(_last_dim(t) or 0, reason), 1)
        return space[id(t)]

    def fixed_outputs(node, reason):
        for t in node.output_tensors:
            space[id(t)] = (g.new(_last_dim(t) or 0, reason), 1)

    def whole(node, gin, does):
        """A per-channel layer that reads a flattened tensor: its weights are
        per feature, not per channel, so it stays whole, and what it writes
        is a group of its own."""
        op = node.operation
        g.fix(gin, f"layer {op.name!r} {does} a flattened tensor")
        fixed_outputs(node, f"comes from layer {op.name!r}, which {does} a flattened tensor")

    def share(table, layer, group):
        """A layer called several times uses the same weights each time: its
        groups across calls are one."""
        if id(layer) in table:
            old = table[id(layer)]
            if isinstance(old, tuple):
                if old[1] != group[1]:
                    # Channels of other sizes (a flattened tensor's and one
                    # read whole): not one group; both stay, and the
                    # layer's input is the first call's.
                    g.fix(old[0], f"layer {layer.name!r} reads it with different layouts")
                    g.fix(group[0], f"layer {layer.name!r} reads it with different layouts")
                    return old
                group = (g.union(old[0], group[0]), group[1])
            else:
                group = g.union(old, group)
        table[id(layer)] = group
        return group

    for t in graph.inputs:
        space[id(t)] = (g.new(_last_dim(t) or 0, "is a model input"), 1)

    for node in nodes:
        op = node.operation
        ins, outs = list(node.input_tensors), list(node.output_tensors)
        if isinstance(op, keras.layers.InputLayer):
            for t in outs:
                tensor_space(t, "is a model input")
            continue
        shapes.setdefault(id(op), []).append(tuple(outs[0].shape) if outs else None)
        in_shapes.setdefault(id(op), []).append(tuple(ins[0].shape) if ins and getattr(
            ins[0], "shape", None) is not None else None)
        kind = kind_of(op)
        rank = len(ins[0].shape) if ins and getattr(ins[0], "shape", None) is not None else 0
        role = channel_role(op, rank) if ins else None
        single = len(ins) == 1 and len(outs) == 1
        if (kind is not None and kind.units_key and single and getattr(op, "groups", 1) == 1
                and getattr(op, "data_format", "channels_last") == "channels_last"
                and not getattr(op, "lora_enabled", False)  # its kernel is computed
                and getattr(op, "kernel", None) is not None):
            gin, rep = tensor_space(ins[0], "is a model input")
            first = id(op) not in in_group
            gin, rep = share(in_group, op, (gin, rep))
            d = g.data[g.find(gin)]
            if first:
                d.consumers.append((op, rep))
            d.read.append(ins[0])
            gout = out_group.get(id(op))
            if gout is None:
                gout = g.new(op.kernel.shape[kind.out_axis])
                g.data[gout].producers.append(op)
                out_group[id(op)] = gout
            if not zero_preserving_activation(getattr(op, "activation", None)):
                g.fix(gout, f"layer {op.name!r} has activation "
                            f"{getattr(op.activation, '__name__', op.activation)!r}, which does "
                            "not map 0 to 0")
            space[id(outs[0])] = (gout, 1)
            readers_of = readers.get(id(outs[0]), [])
            if (len(readers_of) == 1 and channel_role(readers_of[0], len(outs[0].shape))
                    == "normalization"):
                bn_after[id(op)] = readers_of[0]
            continue
        if (kind is not None and kind.per_channel and single
                and getattr(op, "depth_multiplier", None) == 1
                and getattr(op, "data_format", "channels_last") == "channels_last"):
            gin, rep = tensor_space(ins[0], "is a model input")
            if rep != 1:
                whole(node, gin, "reads")
                continue
            gin = share(channel_group, op, gin)
            if id(op) not in _members(g, gin):
                g.data[g.find(gin)].channelwise.append(op)
            if not zero_preserving_activation(getattr(op, "activation", None)):
                g.fix(gin, f"layer {op.name!r} has activation "
                           f"{getattr(op.activation, '__name__', op.activation)!r}, which does "
                           "not map 0 to 0")
            space[id(outs[0])] = (gin, 1)
            continue
        if role == "channelwise" and single:
            gin, rep = tensor_space(ins[0], "is a model input")
            if not zero_preserving_activation(op):
                g.fix(gin, f"layer {op.name!r} does not map 0 to 0")
            space[id(outs[0])] = (gin, rep)
            continue
        if role == "normalization" and single:
            gin, rep = tensor_space(ins[0], "is a model input")
            if rep != 1:
                whole(node, gin, "normalizes")
                continue
            if not getattr(op, "scale", True):
                g.fix(gin, f"layer {op.name!r} has no scale (gamma): a removed channel would "
                           "not stay 0")
            gin = share(channel_group, op, gin)
            if id(op) not in _members(g, gin):
                g.data[g.find(gin)].channelwise.append(op)
            space[id(outs[0])] = (gin, 1)
            continue
        if role == "merge" and len(outs) == 1 and ins:
            spaces = [tensor_space(t, "is a model input") for t in ins]
            merged = spaces[0][0]
            for other, rep in spaces[1:]:
                merged = g.union(merged, other)
            if len({rep for _, rep in spaces}) != 1 or len({_last_dim(t) for t in ins}) != 1:
                g.fix(merged, f"layer {op.name!r} merges tensors of different layouts "
                              "(broadcasting)")
            space[id(outs[0])] = (merged, spaces[0][1])
            continue
        if (isinstance(op, keras.layers.Flatten) and single
                and getattr(op, "data_format", "channels_last") == "channels_last"):
            gin, rep = tensor_space(ins[0], "is a model input")
            spatial = ins[0].shape[1:-1]
            if any(s is None for s in spatial):
                g.fix(gin, f"layer {op.name!r} flattens a tensor of unknown size")
                fixed_outputs(node, f"comes from layer {op.name!r}")
                continue
            space[id(outs[0])] = (gin, rep * math.prod(spatial))
            continue
        # Anything else may mix channels: everything it reads and writes stays.
        how = ", LoRA enabled" if getattr(op, "lora_enabled", False) else ""
        reason = (f"is read by layer {op.name!r} ({type(op).__name__}{how}), which tfdc cannot "
                  "shrink")
        for t in ins:
            gin, _ = tensor_space(t, "is a model input")
            g.fix(gin, reason)
        fixed_outputs(node, f"comes from layer {op.name!r} ({type(op).__name__})")

    for t in graph.outputs:
        gid, _ = tensor_space(t, "is a model input")
        g.data[g.find(gid)].fixed = "feeds the model output"  # the reason that matters most

    roots = sorted({g.find(i) for i in range(len(g.parent))})
    groups = [g.data[r] for r in roots if g.data[r].producers or g.data[r].size]

    def resolve(table):
        out = {}
        for key, value in table.items():
            if isinstance(value, tuple):
                out[key] = (g.data[g.find(value[0])], value[1])
            else:
                out[key] = g.data[g.find(value)]
        return out

    return ChannelAnalysis(groups=groups, out_group=resolve(out_group),
                           in_group=resolve(in_group), channel_group=resolve(channel_group),
                           input_shapes=in_shapes, output_shapes=shapes, bn_after=bn_after)


def _members(g, gid):
    return {id(layer) for layer in g.data[g.find(gid)].channelwise}
