"""HyperGAN (Ratzlaff & Li Fuxin): mixer, per-layer generators, latent GAN."""

import keras
import tensorflow as tf

from hyperkeras.layers._hypergan import LatentDiscriminator
from hyperkeras.layers._hypergan import LayerGenerator
from hyperkeras.layers._hypergan import Mixer
from hyperkeras.models._base import HyperModel
from hyperkeras.models._base import num_examples
from hyperkeras.models._base import reject_loss_and_metrics
from hyperkeras.models._base import step_logs


@keras.saving.register_keras_serializable(package="hyperkeras")
class HyperGAN(HyperModel):
    """HyperGAN: noise s -> mixer Q -> one code per layer -> generators -> weights.

    A latent discriminator D pushes the mixer's codes towards the Gaussian prior
    N(0, I), which keeps the generated networks diverse. Training (``fit``):
    D maximises ``log D(p) + log(1 - D(q))``; Q and the generators minimise
    ``task loss + beta * -mean(log D(q))``.

    Args:
      target: target network (instance, preset name or config).
      noise_dim: size s of the mixer's input noise (paper: 256).
      code_dim: size d of each layer's code (paper: 128 for MNIST).
      mixer_units, generator_units, discriminator_units: hidden MLP sizes.
      **kwargs: see :class:`~hyperkeras.models.HyperModel` (task, ensemble_size,
        eval_seed, networks_per_step, batch_mode, seed: the seed of the
        training noise s and of the prior samples p, both drawn from the
        model's one :class:`~hyperkeras.models.NoiseSource`).
    """

    def __init__(self, target="hypergan_mnist", noise_dim=256, code_dim=128,
                 mixer_units=(512,), generator_units=(512, 512),
                 discriminator_units=(512, 512), **kwargs):
        super().__init__(target, **kwargs)
        if noise_dim < 1 or code_dim < 1:
            raise ValueError(f"noise_dim and code_dim must be >= 1, got {noise_dim}, {code_dim}")
        self._noise_dim = int(noise_dim)
        self.code_dim = int(code_dim)
        self.mixer_units = tuple(mixer_units)
        self.generator_units = tuple(generator_units)
        self.discriminator_units = tuple(discriminator_units)
        self.mixer = Mixer(len(self.target.layers), self.code_dim, self.mixer_units,
                           name="mixer")
        self.generators = [
            LayerGenerator(info.kernel_shape, info.bias_shape, self.generator_units,
                           name=f"generator_{info.name}")
            for info in self.target.layers]
        self.discriminator = LatentDiscriminator(self.discriminator_units,
                                                 name="discriminator")
        self.beta = 1.0
        self.d_optimizer = None
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_adv_tracker = keras.metrics.Mean(name="g_adv_loss")

    @property
    def noise_dim(self):
        return self._noise_dim

    def codes(self, noise):
        return self.mixer(noise)

    def generate_from_codes(self, codes):
        return [gen(codes[:, i]) for i, gen in enumerate(self.generators)]

    def generate(self, noise, training=False):
        return self.generate_from_codes(self.codes(noise))

    def build_generators(self):
        codes = self.codes(tf.zeros([1, self.noise_dim]))
        self.generate_from_codes(codes)
        self.discriminator(codes)

    # ---------------------------------------------------------------- training
    def compile(self, optimizer="adam", discriminator_optimizer="adam", beta=1.0,
                **kwargs):
        """``optimizer`` trains mixer and generators, ``discriminator_optimizer`` D.

        ``beta`` weights the adversarial term against the task loss.
        """
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        kwargs = reject_loss_and_metrics(
            self, kwargs, "task loss + beta * adversarial loss, and the "
            "discriminator's GAN loss")
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        self.d_optimizer = keras.optimizers.get(discriminator_optimizer)
        self.beta = float(beta)
        self.build()
        self.optimizer.build(self.generator_variables())
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["discriminator_optimizer"] = keras.saving.serialize_keras_object(
                self.d_optimizer)
            config["beta"] = self.beta
        return config

    @property
    def metrics(self):
        return self.task_metrics() + [self.d_loss_tracker, self.g_adv_tracker]

    def generator_variables(self):
        out = list(self.mixer.trainable_variables)
        for g in self.generators:
            out += g.trainable_variables
        return out

    def train_step(self, data):
        x, y = data[0], data[1]
        weight = num_examples(x)
        x, y = self.split_batch(x, y)
        k = self.networks_per_step
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        s = self.noise_source.normal([k, self.noise_dim])
        prior = self.noise_source.normal([k, len(self.generators), self.code_dim])
        gen_vars = self.generator_variables()
        with tf.GradientTape() as g_tape:
            codes = self.codes(s)
            params = self.generate_from_codes(codes)
            outputs = self.target.forward(params, x)
            task_loss, acc = self.task_loss(outputs, y)
            d_fake = self.discriminator(codes)
            # -mean(log D(q)) = mean(softplus(-logit))
            g_adv = tf.reduce_mean(tf.nn.softplus(-d_fake))
            g_loss = (task_loss + self.beta * g_adv) / replicas
        g_grads = g_tape.gradient(g_loss, gen_vars)
        self.optimizer.apply_gradients(zip(g_grads, gen_vars))

        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as d_tape:
            d_real = self.discriminator(prior)
            d_fake = self.discriminator(tf.stop_gradient(codes))
            # minimise -[log D(p) + log(1 - D(q))]
            d_loss = tf.reduce_mean(tf.nn.softplus(-d_real)) + \
                tf.reduce_mean(tf.nn.softplus(d_fake))
            scaled_d_loss = d_loss / replicas
        d_grads = d_tape.gradient(scaled_d_loss, d_vars)
        self.d_optimizer.apply_gradients(zip(d_grads, d_vars))

        self.update_task_metrics(task_loss, acc, weight)
        self.d_loss_tracker.update_state(d_loss)
        self.g_adv_tracker.update_state(g_adv)
        return step_logs(self.metrics)

    def get_config(self):
        return {**super().get_config(), "noise_dim": self.noise_dim,
                "code_dim": self.code_dim, "mixer_units": list(self.mixer_units),
                "generator_units": list(self.generator_units),
                "discriminator_units": list(self.discriminator_units)}
