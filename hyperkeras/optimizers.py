"""Adam with TensorFlow's fused update kernel (see :class:`FusedAdam`)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="hyperkeras")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with one fused ``ResourceApplyAdam`` kernel per
    variable instead of Keras' ten element-wise passes over memory, which
    dominate a CPU step with large generators (HyperGAN's hold 17.5M weights).
    Same arithmetic, so results match Keras' Adam to rounding; schedules,
    weight decay, clipping and serialisation are Keras'. AMSGrad and sparse
    gradients take Keras' own path."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


def adam_with_decay(learning_rate, decay_rate=None):
    """:class:`FusedAdam` whose learning rate decays by ``decay_rate`` every step."""
    if decay_rate is not None and decay_rate != 1.0:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=1, decay_rate=decay_rate)
    return FusedAdam(learning_rate)
