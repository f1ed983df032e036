"""Bayesian optimization: a BoTorch Gaussian process, an acquisition registry, batches with pending points.

The GP sees the unit cube (``space.encode``, float64): a ``SingleTaskGP`` with a scaled Matern-5/2 kernel (times
a categorical kernel on ``space.categorical_dims`` when the space has choices) and ``UnitLengthscalePrior``
(``GPOptions.kernel="botorch"``: BoTorch's own kernels and priors), a noise variance floor of 1e-6 with a prior
that favours small noise (``GPOptions.min_noise``, ``noise_prior``: BoTorch's 1e-4 floor keeps the GP from
interpolating an exact objective) and a ``Standardize`` outcome transform. Integers are relaxed to [0, 1] and
snapped with ``space.round``.

What the model is trained on (``torchhpo.observations``; larger score is better, whatever the study's mode):

* COMPLETED trials' ``score``; FAILED trials get the worst observed score (imputed, not excluded: a region where
  training diverges must look bad, else it looks unexplored and the acquisition keeps going back there).
* With early stopping (any PRUNED trial), the rung-aware rule of BOHB: the scores reported at the highest step
  that at least ``max(d + 2, options.min_rung_points)`` trials reached. One model sees every bracket's results.
* RUNNING trials are pending points, so parallel workers never get the same config twice: believed observations
  at the posterior mean for analytic acquisitions (kriging believer), ``X_pending`` for Monte-Carlo ones.

Randomness: a suggestion is a function of the searcher's seed and the history. Our draws, and BoTorch's where it
takes a seed, are seeded; the BoTorch steps that take none (fit retries, qLogNEI's baseline pruning, the mixed
optimizer, pathwise samples) share the global RNG, seeded per suggestion and restored after it (``_seeded``).

Example:
    >>> import torchhpo as th
    >>> space = th.Space({"x": th.Float(-1.0, 1.0)})
    >>> study = th.Study(space, mode="max", searcher=th.GP(n_initial=3, seed=0))
    >>> _ = study.optimize(lambda c, t: -c["x"] ** 2, n_trials=5, progress=False)
    >>> abs(study.best.config["x"]) < 0.5
    True
"""

# the package's modules: options (GPOptions), model (kernel, fit, cached posterior), acquisition (its
# maximization), searcher (GP); the names below without an alias are the public surface
from torchhpo.gp.acquisition import _boltzmann as _boltzmann
from torchhpo.gp.acquisition import _initial_conditions as _initial_conditions
from torchhpo.gp.acquisition import maximize_acquisition
from torchhpo.gp.model import CachedGP as CachedGP
from torchhpo.gp.model import UnitLengthscalePrior as UnitLengthscalePrior
from torchhpo.gp.model import _believe as _believe
from torchhpo.gp.model import build_model as build_model
from torchhpo.gp.model import training_data
from torchhpo.gp.options import ACQUISITIONS as ACQUISITIONS
from torchhpo.gp.options import GPOptions
from torchhpo.gp.searcher import GP
from torchhpo.gp.searcher import _seeded as _seeded

__all__ = ["GP", "GPOptions", "maximize_acquisition", "training_data"]
