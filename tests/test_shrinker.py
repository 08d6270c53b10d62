"""tfdc.shrinker: shrink rebuilds a model without its removed units, exactly;
units reports what goes."""

import functools

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers

import tfdc
from tfdc.structured import StructuredPruning

BATCH = 128


def residual_cnn():
    """Two inverted residual blocks on one residual stream: stem, b1_project
    and b2_project all write the stream's 8 channels (two `Add`s)."""
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(momentum=0.5, name="stem_bn")(x)
    x = layers.ReLU(6.0)(x)
    for i in (1, 2):
        h = layers.Conv2D(16, 1, use_bias=False, name=f"b{i}_expand")(x)
        h = layers.BatchNormalization(momentum=0.5, name=f"b{i}_expand_bn")(h)
        h = layers.ReLU(6.0)(h)
        h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{i}_dw")(h)
        h = layers.BatchNormalization(momentum=0.5, name=f"b{i}_dw_bn")(h)
        h = layers.ReLU(6.0)(h)
        h = layers.Conv2D(8, 1, use_bias=False, name=f"b{i}_project")(h)
        h = layers.BatchNormalization(momentum=0.5, name=f"b{i}_project_bn")(h)
        x = layers.Add(name=f"b{i}_add")([x, h])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax", name="out")(x))


def compile_(model, lr=3e-3):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
    return model


def zero_columns(kernel):
    kernel = keras.ops.convert_to_numpy(kernel)
    return np.flatnonzero(~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0))


def run_tflite(path, x):
    interpreter = tfdc.load_interpreter(str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for i in range(len(x)):
        interpreter.set_tensor(inp["index"], x[i:i + 1])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0])
    return np.array(outputs)


def test_residual_branches_pruned_together_and_export_equals_masked_model(tmp_path,
                                                                          mnist_small):
    (x, y), (xt, _) = mnist_small
    x, xt = x[..., None], xt[:16, ..., None]
    model = compile_(residual_cnn())
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning(0.5, frequency=2)])
    # The residual stream lost the same 4 channels in every branch of both Adds.
    removed = zero_columns(model.get_layer("stem").kernel)
    assert len(removed) == 4
    for name in ("b1_project", "b2_project"):
        np.testing.assert_array_equal(zero_columns(model.get_layer(name).kernel), removed)
    for name in ("stem_bn", "b1_project_bn", "b2_project_bn"):
        bn = model.get_layer(name)
        assert np.all(keras.ops.convert_to_numpy(bn.gamma)[removed] == 0)
        assert np.all(keras.ops.convert_to_numpy(bn.beta)[removed] == 0)
    stream = keras.Model(model.inputs, model.get_layer("b2_add").output)
    assert np.all(stream.predict(xt, verbose=0)[..., removed] == 0)

    report = tfdc.units(model)
    assert (report["stem"].units, report["stem"].kept) == (8, 4)
    assert (report["b1_expand"].units, report["b1_expand"].kept) == (16, 8)
    assert report["out"].fixed == "feeds the model output"

    small = tfdc.shrink(model)
    kept = np.setdiff1d(np.arange(8), removed)
    for name in ("stem", "b1_project", "b2_project"):
        assert small.get_layer(name).filters == 4
    for name in ("b1_expand", "b2_expand"):  # the readers of the stream lost its rows
        np.testing.assert_array_equal(
            small.get_layer(name).kernel.numpy(),
            model.get_layer(name).kernel.numpy()[:, :, kept][..., ~np.isin(
                np.arange(16), zero_columns(model.get_layer(name).kernel))])
    np.testing.assert_array_equal(small.get_layer("out").kernel.numpy(),
                                  model.get_layer("out").kernel.numpy()[kept])
    assert small.count_params() == report.weights_kept < model.count_params() / 2
    expected = keras.ops.convert_to_numpy(model(xt, training=False))
    np.testing.assert_allclose(small(xt, training=False), expected, atol=1e-5)

    # BatchNormalization folded, converted, packed, decoded, run by LiteRT.
    path = tmp_path / "small.tflite"
    tfdc.export(tfdc.fold_batchnorm(small), path, batch_size=1, check_kernels=False)
    np.testing.assert_allclose(run_tflite(path, xt), expected, atol=1e-5)


def test_flatten_readers_lose_one_row_per_position(mnist_small):
    (x, y), (xt, _) = mnist_small
    model = compile_(keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(6, 5, strides=3, activation="relu", name="conv"),
        layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(12, activation="relu", name="fc"),
        layers.Dense(10, activation="softmax", name="out")]))
    model.fit(x[..., None], y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning({"conv": 0.5, "fc": 0.25}, frequency=2)])
    small = tfdc.shrink(model)
    assert small.get_layer("conv").filters == 3 and small.get_layer("fc").units == 9
    assert small.get_layer("fc").kernel.shape == (4 * 4 * 3, 9)  # 16 positions x 3 channels
    np.testing.assert_allclose(small(xt[:32, ..., None]), model(xt[:32, ..., None]), atol=1e-5)


def test_nothing_removed_gives_an_equal_copy():
    model = residual_cnn()
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    small = tfdc.shrink(model)
    assert small is not model and small.count_params() == model.count_params()
    np.testing.assert_allclose(small(x), model(x), atol=1e-6)
    assert tfdc.units(model).weights_kept == model.count_params()


def test_a_layer_with_every_unit_removed_keeps_one_zero_unit():
    model = keras.Sequential([keras.Input((5,), batch_size=2, name="features"),
                              layers.Dense(4, activation="relu", name="fc"),
                              layers.Dense(3, name="out")])
    model.get_layer("fc").set_weights([np.zeros((5, 4), "float32"), np.zeros(4, "float32")])
    small = tfdc.shrink(model)
    assert small.get_layer("fc").units == 1
    # The input as it was (an exported signature names it so; it was keras_tensor_4).
    assert [(t.name, t.shape) for t in small.inputs] == [("features", (2, 5))]
    x = np.ones((2, 5), "float32")
    np.testing.assert_allclose(small(x), model(x), atol=1e-6)


def test_units_counts_weights_and_work():
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                              layers.Dense(32, activation="relu", name="fc1"),
                              layers.Dense(10, activation="softmax", name="out")])
    kernel, bias = model.get_layer("fc1").get_weights()
    kernel[:, :12] = 0
    bias[:12] = 0
    bias[12] = 0  # a zero bias alone does not remove a unit
    model.get_layer("fc1").set_weights([kernel, bias])
    report = tfdc.units(model)
    assert (report["fc1"].units, report["fc1"].kept) == (32, 20)
    assert (report["fc1"].weights, report["fc1"].weights_kept) == (784 * 32 + 32, 784 * 20 + 20)
    assert (report["out"].weights, report["out"].weights_kept) == (32 * 10 + 10, 20 * 10 + 10)
    assert (report.macs, report.macs_kept) == (784 * 32 + 320, 784 * 20 + 200)
    assert "fc1" in str(report) and "32 -> 20" in report.to_markdown()
    assert tfdc.shrink(model).count_params() == report.weights_kept
    assert report.uncounted == () and "leave out" not in str(report)
    # A recurrent layer and a nested model: their work is not in the MAC
    # totals, and the table says so (a 2.68x read as the model's was ~1.02x).
    inputs = keras.Input((10, 8))
    inner = keras.Sequential([keras.Input((16,)), layers.Dense(32, name="a")], name="inner")
    mixed = keras.Model(inputs, layers.Dense(4, name="out")(
        inner(layers.LSTM(16, name="rec")(inputs))))
    report = tfdc.units(mixed)
    assert report.uncounted == ("rec", "inner") and report.macs == 32 * 4
    assert str(report).splitlines()[-1].endswith("MACs leave out rec, inner")



def test_a_layer_reading_a_flattened_tensor_and_a_copy_of_it_keeps_its_inputs():
    # A shared Dense read Flatten(x) and Rescaling(0.5, offset=0.1)(Flatten(x))
    # (found with a probe's Rescaling(0.5), which tfdc now passes channels
    # through): the two layouts (one channel 20 times, 20 channels once)
    # became one group of one channel, units counted 6 weights of the 20x6
    # kernel, and shrink failed in Keras's set_weights ((20, 4) against (1, 4)).
    inputs = keras.Input((4, 5, 1))
    flat = layers.Flatten()(inputs)
    shared = layers.Dense(6, activation="relu", name="shared")
    hidden = layers.Add()([shared(flat), shared(layers.Rescaling(0.5, offset=0.1)(flat))])
    model = keras.Model(inputs, layers.Dense(3, name="out")(hidden))
    kernel, bias = shared.get_weights()
    kernel[:, :2], bias[:2] = 0, 0
    shared.set_weights([kernel, bias])
    report = tfdc.units(model)
    assert (report["shared"].weights, report["shared"].weights_kept) == (126, 84)
    small = tfdc.shrink(model)
    assert small.get_layer("shared").get_weights()[0].shape == (20, 4)
    x = np.random.default_rng(0).uniform(size=(5, 4, 5, 1)).astype("float32")
    np.testing.assert_allclose(small(x), model(x), atol=1e-6)


def test_a_normalization_of_a_flattened_tensor_stays_whole():
    # A BatchNormalization after Flatten has one gamma per feature (800), not
    # per channel (8): it was taken as the conv's 8 channels, units counted
    # fc's kernel as 8 rows instead of 800, and shrink failed in Keras's
    # set_weights ((800,) against (8,)). (Found by a probe.)
    inputs = keras.Input((12, 12, 1))
    flat = layers.Flatten()(layers.Conv2D(8, 3, activation="relu", name="conv")(inputs))
    hidden = layers.Dense(16, activation="relu", name="fc")(layers.BatchNormalization(
        name="bn")(flat))
    model = keras.Model(inputs, layers.Dense(10, name="out")(hidden))
    kernel, bias = model.get_layer("fc").get_weights()
    kernel[:, 8:], bias[8:] = 0, 0
    model.get_layer("fc").set_weights([kernel, bias])
    report = tfdc.units(model)
    assert report["conv"].kept == 8
    assert "'bn' normalizes a flattened tensor" in report["conv"].fixed
    assert (report["fc"].weights, report["fc"].weights_kept) == (12_816, 6_408)
    small = tfdc.shrink(model)
    assert small.get_layer("bn").get_weights()[0].shape == (800,)
    assert small.get_layer("fc").get_weights()[0].shape == (800, 8)
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 1)).astype("float32")
    np.testing.assert_array_equal(small(x), model(x))


def test_a_shared_layer_counts_the_work_of_every_call():
    # A Conv2D called on 8x8 and on 4x4 maps runs its kernel on both: units
    # counted one call's 3,456 MACs of 17,280.
    inputs = keras.Input((8, 8, 1))
    features = layers.Conv2D(6, 3, padding="same", activation="relu", name="p")(inputs)
    shared = layers.Conv2D(4, 3, padding="same", activation="relu", name="s")
    pooled = [layers.GlobalAveragePooling2D()(shared(t))
              for t in (features, layers.MaxPooling2D()(features))]
    model = keras.Model(inputs, layers.Dense(3, name="out")(layers.Add()(pooled)))
    assert tfdc.units(model)["s"].macs == (8 * 8 + 4 * 4) * 3 * 3 * 6 * 4


@pytest.mark.parametrize("offset, shrinks", [(0.0, True), (0.1, False)])
def test_a_rescaling_by_a_number_passes_channels_through(offset, shrinks):
    # Rescaling(0.5) kept every channel it read ("which tfdc cannot shrink"),
    # where the docs exclude only a Rescaling with an offset (which moves 0).
    inputs = keras.Input((4, 5, 1))
    conv = layers.Conv2D(3, 2, padding="same", activation="relu", name="p")(inputs)
    hidden = layers.Dense(6, activation="relu", name="s")(
        layers.Flatten()(layers.Rescaling(0.5, offset=offset)(conv)))
    model = keras.Model(inputs, layers.Dense(3, name="out")(hidden))
    kernel, bias = model.get_layer("p").get_weights()
    kernel[..., 0], bias[0] = 0, 0
    model.get_layer("p").set_weights([kernel, bias])
    assert tfdc.units(model)["p"].kept == (2 if shrinks else 3)
    small = tfdc.shrink(model)
    x = np.random.default_rng(0).uniform(size=(4, 4, 5, 1)).astype("float32")
    np.testing.assert_allclose(small(x), model(x), atol=1e-6)


def test_units_counts_convolution_work_by_hand():
    # A transposed convolution multiplies its kernel once per *input*
    # position (stride 2 made it 4x), and a channels_first layer's positions
    # are its last axes.
    model = keras.Sequential([
        keras.Input((7, 7, 3)),
        layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="up"),  # -> 14x14x5
        layers.Conv2D(4, 3, strides=2, data_format="channels_first", name="cf"),  # -> 4x6x2
        layers.Conv2D(6, 2, strides=2, padding="same", name="cl"),  # -> 2x3x6
    ])
    report = tfdc.units(model)
    assert report["up"].macs == 7 * 7 * (3 * 3 * 3 * 5)
    assert report["cf"].macs == 6 * 2 * (3 * 3 * 14 * 4)
    assert report["cl"].macs == 2 * 3 * (2 * 2 * 2 * 6)
    # A channels_first layer keeps its units, and says why (it read "-"
    # with no note, and StructuredPruning(0.5) blamed the model output).
    assert report["cf"].fixed == "channels_first: tfdc removes the channels of channels_last " \
        "layers only"
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"nothing to prune: .*\(.*cf: channels_first: tfdc "
                       r"removes the channels of channels_last layers only"):
        model.fit(np.zeros((2, 7, 7, 3)), np.zeros((2, 2, 3, 6)), verbose=0,
                  callbacks=[StructuredPruning(0.5)])


def test_units_leaves_out_the_work_over_an_input_of_unknown_size():
    # It counted one output position: 144 MACs for a layer that does 97,344
    # at 28x28, with nothing said; the totals' ratio was read as the model's.
    model = keras.Sequential([keras.Input((None, None, 1)), layers.Conv2D(16, 3, name="c1"),
                              layers.GlobalAveragePooling2D(), layers.Dense(10, name="out")])
    report = tfdc.units(model)
    assert report["c1"].macs == 0 and report.uncounted == ("c1",)
    assert report["out"].macs == 16 * 10
    assert "MACs leave out c1" in str(report)

def test_shrink_works_from_the_zeros_after_save_and_load(tmp_path, mnist_small):
    (x, y), (xt, _) = mnist_small
    model = compile_(keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                                       layers.Dense(16, activation="relu", name="fc1"),
                                       layers.Dense(10, activation="softmax", name="out")]))
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning(0.5, frequency=4)])
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    small = tfdc.shrink(loaded)
    assert small.get_layer("fc1").units == 8
    np.testing.assert_allclose(small(xt[:16]), model(xt[:16]), atol=1e-5)


def test_units_whose_weights_came_back_are_kept_and_told(mnist_small, tmp_path):
    # As EarlyStopping(restore_best_weights=True) does with an epoch before
    # the schedule ended: shrink quietly returned the larger model.
    (x, y), _ = mnist_small
    model = compile_(keras.Sequential([keras.Input((28, 28)), layers.Flatten(),
                                       layers.Dense(16, activation="relu", name="fc1"),
                                       layers.Dense(10, activation="softmax", name="out")]))
    model.fit(x[:512], y[:512], epochs=1, batch_size=BATCH, verbose=0,
              callbacks=[StructuredPruning(0.5, frequency=1)])
    kernel = model.get_layer("fc1").kernel
    removed = zero_columns(kernel.numpy())
    restored = kernel.numpy()
    restored[:, removed[0]] = 0.01
    kernel.assign(restored)
    with pytest.warns(UserWarning, match=r"784 weights that the pruning masks zero are not zero "
                                         r"\(sequential(_\d+)?/fc1/kernel: 784\)"):
        small = tfdc.shrink(model)
    assert small.get_layer("fc1").units == 16 - len(removed) + 1
    # Saved and loaded, before a train step recovers the masks from the
    # weights: judged by the count of zeros the file saved.
    model.save(tmp_path / "restored.keras")
    loaded = keras.saving.load_model(tmp_path / "restored.keras")
    with pytest.warns(UserWarning, match=r"^784 weights that the pruning masks zero are not "
                                         r"zero \(fc1/kernel: 784\)") as caught:
        assert tfdc.shrink(loaded).get_layer("fc1").units == small.get_layer("fc1").units
    assert len(caught) == 1  # the shrunk copy's masks, which no longer fit, are not judged


def test_depthwise_multiplier_keeps_its_channels():
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 1, name="conv")(inputs)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Flatten()(h)))
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    kernel[..., 1], bias[1] = 0, 0
    conv.set_weights([kernel, bias])
    report = tfdc.units(model)
    assert report["conv"].kept == 4 and "DepthwiseConv2D" in report["conv"].fixed
    assert tfdc.shrink(model).get_layer("conv").filters == 4


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match="keras.Model"):
        tfdc.shrink("model.keras")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = layers.Dense(3)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        tfdc.units(net)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["relu", "tanh", None]),
                          st.integers(0, 2 ** 6 - 1)), min_size=1, max_size=3),
       st.booleans())
def test_zeroed_units_shrink_away_exactly(hidden, residual):
    """Any stack of Dense layers (optionally with a residual Add over the last
    two), any units zeroed: shrink gives the same outputs with the weights
    `units` predicts."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    x = inputs
    for i, (width, activation, _) in enumerate(hidden):
        x = layers.Dense(width, activation=activation, name=f"fc{i}")(x)
    if residual:
        width = hidden[-1][0]
        x = layers.Add()([x, layers.Dense(width, activation="relu", name="branch")(x)])
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    for i, (width, _, zero_bits) in enumerate(hidden):
        layer = model.get_layer(f"fc{i}")
        kernel, bias = layer.get_weights()
        zero = [j for j in range(width) if zero_bits >> j & 1]
        kernel[:, zero], bias[zero] = 0, 0
        layer.set_weights([kernel, bias])
    x = np.random.default_rng(1).normal(size=(6, 5)).astype("float32")
    small = tfdc.shrink(model)
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
    assert small.count_params() == tfdc.units(model).weights_kept


def test_transposed_and_1d_convolutions_shrink_exactly():
    inputs = keras.Input((6, 6, 2))
    h = layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(inputs)
    h = layers.Conv2DTranspose(4, 3, strides=2, name="up")(h)
    h = layers.Reshape((-1, 3))(layers.Conv2D(3, 1, name="mix")(h))  # mix: kept
    h = layers.Conv1D(6, 3, activation="tanh", name="conv1d")(h)
    h = layers.GlobalMaxPooling1D()(h)
    model = keras.Model(inputs, layers.Dense(2, name="out")(h))
    for name, zero in (("conv", [0, 3]), ("up", [2]), ("conv1d", [1, 4, 5])):
        kernel, bias = model.get_layer(name).get_weights()
        axis = -2 if name == "up" else -1
        index = [slice(None)] * kernel.ndim
        index[axis] = zero
        kernel[tuple(index)], bias[zero] = 0, 0
        model.get_layer(name).set_weights([kernel, bias])
    small = tfdc.shrink(model)
    assert [small.get_layer(n).filters for n in ("conv", "up", "mix", "conv1d")] == [3, 3, 3, 3]
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)


@pytest.mark.parametrize("activation", [lambda t: 2.0 * keras.ops.relu(t),
                                        functools.partial(keras.activations.relu, max_value=6.0)])
def test_an_activation_no_config_can_hold_is_refused_before_training(activation):
    # A lambda or partial as a Dense's activation: StructuredPruning trained,
    # then tfdc.shrink failed with Keras's deserialization error (a page of
    # base64) or "Cannot serialize object functools.partial".
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    hidden = keras.layers.Dense(8, activation=activation, name="b")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    model.compile("adam", "mse")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"^tfdc.shrink, which removes the pruned units after "
                       r"training, rebuilds the model from its layers' configs, and layer 'b' "
                       r"\(Dense\) has a (Python lambda|functools.partial) as its activation"):
        model.fit(np.ones((16, 8)), np.ones((16, 3)), epochs=1, verbose=0,
                  callbacks=[tfdc.StructuredPruning({"a": 0.5})])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match=r"^tfdc.shrink rebuilds .* layer 'b'"):
        tfdc.shrink(model)
