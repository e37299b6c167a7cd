"""HyperGAN (Ratzlaff & Li Fuxin): mixer, per-layer generators, latent GAN."""

import warnings

import keras
import tensorflow as tf

from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_weight
from hyperkeras._utils import num_replicas
from hyperkeras.layers import LatentDiscriminator
from hyperkeras.layers import LayerGenerator
from hyperkeras.layers import Mixer
from hyperkeras.losses import gauge_fix
from hyperkeras.losses import kl_entropy
from hyperkeras.models._base import HyperModel
from hyperkeras.optimizers import FusedAdam


@keras.saving.register_keras_serializable(package="hyperkeras")
class HyperGAN(HyperModel):
    """HyperGAN: noise s -> mixer Q -> one code per layer -> generators -> weights.

    A latent discriminator D pushes the mixer's codes towards the Gaussian prior
    N(0, I), which keeps the generated networks diverse. Training (``fit``):
    D maximises ``log D(p) + log(1 - D(q))``; Q and the generators minimise
    ``task loss + beta * -mean(log D(q)) - entropy_weight * H``, with H the
    Kozachenko-Leonenko entropy (d = noise_dim) of the step's gauge-fixed
    networks, a diversity term in weight space (0, the paper's loss: off).

    Args:
      target: target network (instance, preset name or config).
      noise_dim: size s of the mixer's input noise (paper: 256).
      code_dim: size d of each layer's code (paper: 128 for MNIST).
      mixer_units, generator_units, discriminator_units: hidden MLP sizes.
      beta: weight of the adversarial term against the task loss (>= 0; paper:
        1; default 10, chosen with ``diversity_weight`` by
        ``benchmarks/hypergan_ablation.py`` on a validation split).
      entropy_weight: weight of the entropy term (>= 0); ``entropy`` is
        reported whatever the weight (NaN with one network per step).
      diversity_weight: weight of the function-space diversity reward
        (:class:`~hyperkeras.models.HyperModel`); ``None``: 0.3 where it
        applies (classification, two or more networks per step), else 0.
      **kwargs: see :class:`~hyperkeras.models.HyperModel` (task, ensemble_size,
        eval_seed, networks_per_step, batch_mode, seed: the seed of the
        training noise s and of the prior samples p, both drawn from the
        model's one :class:`~hyperkeras.models.NoiseSource`).
    """

    objective_metric_names = ("loss", "d_loss", "g_adv_loss", "entropy")

    def __init__(self, target="hypergan_mnist", noise_dim=256, code_dim=128,
                 mixer_units=(512,), generator_units=(512, 512),
                 discriminator_units=(512, 512), beta=10.0, entropy_weight=0.0,
                 diversity_weight=None, **kwargs):
        super().__init__(target, diversity_weight=diversity_weight or 0.0, **kwargs)
        if diversity_weight is None and self.supports_diversity:
            self.diversity_weight = 0.3
        self.noise_dim = check_positive_int("noise_dim", noise_dim)
        self.code_dim = check_positive_int("code_dim", code_dim)
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
        self.beta = check_weight("beta", beta)
        self.entropy_weight = check_weight("entropy_weight", entropy_weight)
        if self.entropy_weight and self.networks_per_step < 2:
            raise ValueError("entropy_weight > 0 needs networks_per_step >= 2 (the "
                             "entropy is estimated over the step's networks)")
        self.d_optimizer = None

    def codes(self, noise):
        """The mixer's ``[K, layers, code_dim]`` codes, one per target layer."""
        return self.mixer(noise)

    def generate_from_codes(self, codes):
        return [gen(codes[:, i]) for i, gen in enumerate(self.generators)]

    def build_generators(self):
        codes = self.codes(tf.zeros([1, self.noise_dim]))
        self.generate_from_codes(codes)
        self.discriminator(codes)

    def compile(self, optimizer=None, discriminator_optimizer=None, beta=None,
                **kwargs):
        """``optimizer`` trains mixer and generators, ``discriminator_optimizer`` D
        (default for both: :class:`hyperkeras.optimizers.FusedAdam`, 1e-3).
        ``beta`` here is deprecated (it sets the constructor's ``beta``)."""
        if beta is not None:
            warnings.warn("HyperGAN.compile(beta=...) is deprecated: pass beta to "
                          "the constructor", DeprecationWarning, stacklevel=2)
            self.beta = check_weight("beta", beta)
        self.compile_own_objective(
            optimizer or FusedAdam(), kwargs, "task loss + beta * adversarial loss, and the "
            "discriminator's GAN loss")
        self.d_optimizer = keras.optimizers.get(discriminator_optimizer or FusedAdam())
        self.build()
        self.optimizer.build(self.trained_variables())
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["discriminator_optimizer"] = keras.saving.serialize_keras_object(
                self.d_optimizer)
        return config

    def trained_variables(self):
        """Mixer and generators (the discriminator has its own update)."""
        out = list(self.mixer.trainable_variables)
        for g in self.generators:
            out += g.trainable_variables
        return out

    def training_members(self):
        params, codes = super().training_members()
        return params, (codes, params)

    def objective(self, task_loss, state):
        codes, params = state
        # -mean(log D(q)) = mean(softplus(-logit))
        g_adv = tf.reduce_mean(tf.nn.softplus(-self.discriminator(codes)))
        flat = self.target.flatten(gauge_fix(self.target, params))
        if self.entropy_weight == 0:
            flat = tf.stop_gradient(flat)
        entropy = (kl_entropy(flat, dim=self.noise_dim) if self.networks_per_step > 1
                   else tf.constant(float("nan")))
        total = task_loss + self.beta * g_adv
        if self.entropy_weight:
            total -= self.entropy_weight * entropy
        return total, {"loss": total, "g_adv_loss": g_adv, "entropy": entropy}

    def after_update(self, state):
        """The discriminator's step: minimise -[log D(p) + log(1 - D(q))]."""
        prior = self.noise_source.normal([self.networks_per_step, len(self.generators),
                                          self.code_dim])
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as d_tape:
            d_real = self.discriminator(prior)
            d_fake = self.discriminator(tf.stop_gradient(state[0]))
            d_loss = tf.reduce_mean(tf.nn.softplus(-d_real)) + \
                tf.reduce_mean(tf.nn.softplus(d_fake))
            scaled_d_loss = d_loss / num_replicas()
        d_grads = d_tape.gradient(scaled_d_loss, d_vars)
        self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
        return {"d_loss": d_loss}

    def get_config(self):
        return {**super().get_config(), "noise_dim": self.noise_dim,
                "code_dim": self.code_dim, "beta": self.beta,
                "entropy_weight": self.entropy_weight, "mixer_units": list(self.mixer_units),
                "generator_units": list(self.generator_units),
                "discriminator_units": list(self.discriminator_units)}
