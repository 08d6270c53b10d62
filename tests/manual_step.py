"""A Keras model whose train step assigns the weights itself, for the
tests of what tfdc's callbacks do when no variable constraint runs."""

import keras


class ManualStep(keras.Sequential):
    """A train step that updates the weights with `assign_sub`: no
    optimizer update, so no variable constraint, runs."""

    def train_step(self, data):
        import tensorflow as tf
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        for v, g in zip(self.trainable_variables, tape.gradient(loss, self.trainable_variables)):
            v.assign_sub(0.05 * g)
        if self.counts_steps:
            self.optimizer.iterations.assign_add(1)
        return {"loss": loss}


def manual_step_mlp(counts_steps=True):
    """28x28 -> fc1 (32, relu) -> out (10, softmax), with that train step
    (`counts_steps` False: it leaves `optimizer.iterations` at 0, as a step
    that never calls the optimizer does)."""
    model = ManualStep([keras.Input((28, 28)), keras.layers.Flatten(),
                        keras.layers.Dense(32, activation="relu", name="fc1"),
                        keras.layers.Dense(10, activation="softmax", name="out")], name="manual")
    model.counts_steps = counts_steps
    return model
