"""The GP searcher's options (``GPOptions``) and acquisition names: read by the model, the acquisition
optimization and the searcher."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from torchhpo.checks import integer, number

# name -> (analytic class for one point without pending ones, Monte-Carlo class for batches and pending points)
ACQUISITIONS: dict[str, tuple[str | None, str | None]] = {
    "ei": ("ExpectedImprovement", "qExpectedImprovement"),
    "logei": ("LogExpectedImprovement", "qLogExpectedImprovement"),
    "pi": ("ProbabilityOfImprovement", "qProbabilityOfImprovement"),
    "qlognei": (None, "qLogNoisyExpectedImprovement"),
    "qucb": (None, "qUpperConfidenceBound"),
    "ts": (None, None),
    "ucb": ("UpperConfidenceBound", "qUpperConfidenceBound"),
}

BOTORCH_NOISE_PRIOR = (-4.0, 1.0)  # LogNormal(loc, scale) of the noise variance: BoTorch's default


@dataclass(frozen=True)
class GPOptions:
    """Knobs of the GP searcher that rarely need changing.

    Attributes:
        num_restarts: L-BFGS-B starts of the acquisition optimization, run as one batch.
        raw_samples: Sobol points scored to pick the starts.
        maxiter: L-BFGS-B iterations per acquisition optimization.
        incumbents, perturbations, perturbation_scale: the best observed points, how many Gaussian perturbations
            of each are scored with the Sobol points, and their standard deviation (the best point is always a
            start): near an optimum the acquisition's maximum is usually next to the incumbent.
        batch_share: the points of a batch after the first share this fraction of its budget (restarts, samples,
            iterations) among them: the first point matters most, the others mostly need to be spread.
        min_restarts, min_raw_samples, min_perturbations, min_maxiter: the least budget of a later point.
        eval_batch: candidates scored by the acquisition per call (bounds the memory of scoring the starts).
        fit_maxiter: L-BFGS-B iterations per hyperparameter fit (warm starts usually stop far earlier).
        fit_ftol: the fit stops when an iteration improves the marginal likelihood by less than this, relatively
            (SciPy's default, 2e-9, spends most of a warm fit on digits that do not change the suggestion).
        alternating_steps: rounds of local search / L-BFGS-B of the mixed optimizer (spaces with choices).
        alternating_maxiter_share: the mixed optimizer's L-BFGS-B iterations per round, as a share of ``maxiter``.
        mc_samples: quasi-MC samples of the Monte-Carlo acquisitions.
        ts_candidates: Sobol candidates each Thompson sample is maximized over.
        ts_perturbations, ts_perturbation_scale: Gaussian perturbations of each observation added to them
            (how many per observation, their standard deviation), so samples can be maximized near the data.
        ts_joint_share: the share of them sampled jointly without pathwise features (choices): that costs their cube.
        warm_start: start each hyperparameter fit from the previous one when its observations are all among the
            current ones (faster).
        cold_fits_below: below this many observations, also fit from the defaults; the larger likelihood wins.
        min_rung_points: least observations at a step for the rung-aware rule (with ``d + 2``).
        default_initial: ``(low, high)``: with ``n_initial=None``, ``d + 2`` Sobol points clipped to this range.
        fill_attempts: random configs tried to replace proposals that were already tried or pending.
        min_noise: lower bound of the noise variance (in standardized units). BoTorch's default, 1e-4, stops
            the GP from interpolating a deterministic objective and caps the precision it reaches.
        noise_prior: ``(concentration, rate)`` of the Gamma prior on the noise variance; Optuna's ``(1.1, 30)``
            is nearly flat near zero, so exact objectives get a tiny noise and noisy ones still fit theirs.
            ``None``: BoTorch's LogNormal(-4, 1), which pulls the noise towards ~1e-2.
        kernel: ``"matern"``: a Matern-5/2 kernel with ``UnitLengthscalePrior`` on the continuous and integer
            columns times BoTorch's categorical kernel on the choices, scaled, with a Gamma prior on the scale;
            ``"botorch"``: BoTorch's defaults (``SingleTaskGP``: RBF with a LogNormal lengthscale prior scaled by
            the dimension; ``MixedSingleTaskGP`` when there are choices).
        lengthscale_rate: the ``rate`` of ``UnitLengthscalePrior`` (``kernel="matern"``).
        min_lengthscale: the lengthscales' lower bound (``kernel="matern"``): keeps the kernel well-conditioned.
        outputscale_prior: ``(concentration, rate)`` of the Gamma prior on the kernel's scale (``"matern"``).
        gpu_min_points: with ``device="auto"``, the GPU from this many observations on (below, a 64-bit GP is
            launch-bound and the CPU faster); an estimate: ``benchmarks/gpu.py`` measures a machine's crossing point.
    """

    num_restarts: int = 8
    raw_samples: int = 256
    maxiter: int = 60
    incumbents: int = 5
    perturbations: int = 32
    perturbation_scale: float = 0.05
    batch_share: float = 0.5
    min_restarts: int = 2
    min_raw_samples: int = 32
    min_perturbations: int = 4
    min_maxiter: int = 3
    eval_batch: int = 2048
    fit_maxiter: int = 100
    fit_ftol: float = 1e-6
    alternating_steps: int = 4
    alternating_maxiter_share: float = 0.25
    mc_samples: int = 64
    ts_candidates: int = 2048
    ts_perturbations: int = 8
    ts_perturbation_scale: float = 0.02
    ts_joint_share: float = 0.25
    warm_start: bool = True
    cold_fits_below: int = 20
    min_rung_points: int = 6
    default_initial: tuple[int, int] = (5, 10)
    fill_attempts: int = 100
    min_noise: float = 1e-6
    noise_prior: tuple[float, float] | None = (1.1, 30.0)
    gpu_min_points: int = 1000
    kernel: str = "matern"
    lengthscale_rate: float = 0.1
    min_lengthscale: float = 1e-3
    outputscale_prior: tuple[float, float] = (2.0, 1.0)

    _MAY_BE_ZERO: ClassVar[tuple[str, ...]] = ("incumbents", "cold_fits_below", "gpu_min_points")

    def __post_init__(self) -> None:
        if self.kernel not in ("matern", "botorch"):
            raise ValueError(f"GPOptions: kernel={self.kernel!r} must be 'matern' or 'botorch'")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                integer(f"GPOptions: {f.name}", value, low=0 if f.name in self._MAY_BE_ZERO else 1)
            elif f.type == "float":
                number(f"GPOptions: {f.name}", value, strict=True)
            if f.name.endswith("_share") and value > 1:
                raise ValueError(f"GPOptions: {f.name} must be a number in (0, 1], got {value!r}")
        integer("GPOptions: default_initial[1]", self.default_initial[1],
                low=integer("GPOptions: default_initial[0]", self.default_initial[0]))

