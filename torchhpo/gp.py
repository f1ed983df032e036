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

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
from botorch import acquisition as acq
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, SingleTaskGP
from botorch.models.kernels import CategoricalKernel
from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating
from botorch.sampling import SobolQMCNormalSampler
from botorch.sampling.pathwise import draw_matheron_paths
from botorch.utils.sampling import batched_multinomial, draw_sobol_samples
from botorch.utils.transforms import standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from gpytorch.priors import Prior as _Prior

from torchhpo.checks import integer, number
from torchhpo.observations import config_key, fresh_seed, observations, pending, tried, user_values
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import TrialRecord

__all__ = ["GP", "GPOptions", "maximize_acquisition", "training_data"]

log = logging.getLogger(__name__)

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
        warm_start: start each hyperparameter fit from the previous one (faster).
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


class GP(Described):
    """Gaussian-process Bayesian optimization (BoTorch), after ``n_initial`` Sobol points.

    Args:
        acquisition: ``"logei"`` (default: log expected improvement over the best observed score; analytic for
            one point, Monte Carlo with pending points), ``"qlognei"`` (noisy log expected improvement: Monte
            Carlo always, ~2x the cost, for objectives whose noise makes the best observed score misleading),
            ``"ei"``, ``"pi"``, ``"ucb"``, ``"qucb"``, ``"ts"`` (Thompson sampling on pathwise posterior samples),
            or a BoTorch ``AcquisitionFunction`` class (built with the keyword arguments its signature takes among
            ``model``, ``best_f``, ``X_baseline``, ``X_pending``, ``beta``, ``sampler``).
        beta: the multiplier of sigma in UCB: ``alpha = mu + beta * sigma`` (the lecture's ``mu + 2 sigma`` is
            ``beta=2``). BoTorch's own ``beta`` multiplies ``sigma`` by ``sqrt(beta)``; we pass ``beta**2``.
        n_initial: Sobol points before the GP (counting every trial, enqueued ones included); default ``d + 2``
            clipped to ``options.default_initial`` (5 to 10).
        device: ``"auto"`` (the GPU from ``options.gpu_min_points`` observations on, when there is one),
            ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        seed: seeds the Sobol design, the quasi-MC samples and the restarts of each suggestion.
        options: a ``GPOptions``.

    Warm-started hyperparameters make a suggestion depend slightly on the searcher's own past fits, not only on
    the history; set ``GPOptions(warm_start=False)`` for suggestions that are a function of the history alone.
    """

    def __init__(self, acquisition: Any = "logei", *, beta: float = 2.0, n_initial: int | None = None,
                 device: str | torch.device = "auto", seed: int | None = None,
                 options: GPOptions | None = None) -> None:
        if isinstance(acquisition, str) and acquisition not in ACQUISITIONS:
            raise ValueError(f"GP: acquisition={acquisition!r} is unknown; choose one of {sorted(ACQUISITIONS)} "
                             "or pass a botorch AcquisitionFunction class")
        if not isinstance(acquisition, str) and not (
                isinstance(acquisition, type) and issubclass(acquisition, acq.AcquisitionFunction)):
            raise TypeError(f"GP: acquisition must be a name or an AcquisitionFunction class, got {acquisition!r}")
        if device not in ("auto", "cpu", "cuda") and not isinstance(device, torch.device):
            raise ValueError(f"GP: device={device!r} must be 'auto', 'cpu', 'cuda' or a torch.device")
        self.acquisition = acquisition
        self.beta = number("GP: beta", beta)
        self.n_initial = integer("GP: n_initial", n_initial, none=True)
        self.device = device
        self.seed = fresh_seed(seed)
        self.options = options or GPOptions()
        self._warm: dict[str, dict[str, torch.Tensor]] = {}  # model key -> hyperparameters of the last fit

    # --- the searcher ---------------------------------------------------------------------------------------
    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        """``n`` configs: Sobol points while fewer than ``n_initial`` trials exist, then GP proposals."""
        low, high = self.options.default_initial
        n_init = self.n_initial or min(high, max(low, space.dim + 2))
        n_sobol = min(n, max(0, n_init - len(trials)))
        out = space.sobol(n_sobol, seed=self.seed, skip=len(trials)) if n_sobol else []
        if len(out) < n:
            out += self._propose(space, trials, n - len(out), taken=out)
        return out

    def _propose(self, space: Space, trials: Sequence[TrialRecord], n: int, taken: list[Config]) -> list[Config]:
        X, y = self._data(space, trials)
        running = pending(trials) + taken
        X_pending = space.encode(running, device=X.device, dtype=X.dtype) if running else None
        X_new = None
        if len(y) >= 2:
            with _seeded(self._call_seed(len(trials)), X.device):
                model = self._fit_or_none(space, X, y)
                if model is not None:
                    X_new = self._optimize(space, model, X, y, X_pending, n)
        seen = tried(trials) | {config_key(c) for c in taken}
        return self._dedupe(space, [] if X_new is None else space.decode(X_new), seen, n, len(trials))

    def _data(self, space: Space, trials: Sequence[TrialRecord]) -> tuple[torch.Tensor, torch.Tensor]:
        """``training_data`` as tensors of ``_tkwargs``; everything downstream takes device and dtype from them."""
        X, y = training_data(space, trials, min_points=self.options.min_rung_points)
        tkwargs = self._tkwargs(len(y))
        return X.to(**tkwargs), y.to(**tkwargs)

    def _tkwargs(self, n_obs: int) -> dict[str, Any]:
        """The device and dtype of every tensor of a suggestion (the one place they are chosen): float64, for
        the Cholesky factors of nearly interpolating kernels."""
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and n_obs >= self.options.gpu_min_points else "cpu"
        return {"device": torch.device(device), "dtype": torch.float64}

    def _call_seed(self, n: int) -> int:
        return zlib.crc32(f"{self.seed}/{n}".encode())

    def _dedupe(self, space: Space, configs: list[Config], seen: set[str], n: int, n_trials: int) -> list[Config]:
        """Drop proposals equal to an existing, pending or earlier one; fill up with random points."""
        out: list[Config] = []
        for c in configs:
            if config_key(c) not in seen:
                seen.add(config_key(c))
                out.append(c)
        attempt = 0
        while len(out) < n and attempt < self.options.fill_attempts:
            c = space.sample(1, seed=np.random.SeedSequence([self.seed, n_trials, attempt]))[0]
            attempt += 1
            if config_key(c) not in seen:
                seen.add(config_key(c))
                out.append(c)
        return out[:n]

    # --- the model ------------------------------------------------------------------------------------------
    def _fit_or_none(self, space: Space, X: torch.Tensor, y: torch.Tensor) -> Any:
        """The fitted model, or ``None`` (and a warning) when every start fails: the caller then proposes randomly.

        Starts: the previous fit's hyperparameters (warm, fast) and BoTorch's defaults (cold); both below
        ``options.cold_fits_below`` observations, keeping the larger marginal likelihood (with few points a warm
        start alone can stay in a poor optimum), else warm only.
        """
        key = f"{bool(space.categorical_dims)}/{json.dumps(space.to_dict(), sort_keys=True)}"
        warm = self.options.warm_start and key in self._warm
        starts = [True] if warm else []
        if not warm or len(y) < self.options.cold_fits_below:
            starts.append(False)
        fits = []
        for i, start in enumerate(starts):
            try:
                fits.append(self._fit(space, X, y, self._warm[key] if start else None))
            except Exception as e:
                last = i == len(starts) - 1
                if last and start:  # the warm start failed alone: try the defaults
                    starts.append(False)
                log.warning("GP fit failed (%s: %s)%s", type(e).__name__, e,
                            "; proposing a random point" if last and not start and not fits else "")
        if not fits:
            return None
        model = max(fits, key=lambda f: f[0])[1]  # the largest marginal likelihood
        self._warm[key] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                           if "outcome_transform" not in k and "noise" not in k}
        return model

    def _fit(self, space: Space, X: torch.Tensor, y: torch.Tensor,
             state: dict[str, torch.Tensor] | None) -> tuple[float, Any]:
        """(marginal log likelihood with priors, model in eval mode), fitted from ``state`` or the defaults."""
        model = build_model(space, X, y, self.options)
        if state is not None:
            model.load_state_dict({k: v.to(X) for k, v in state.items()}, strict=False)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        # a failed attempt is retried from hyperparameters drawn from the priors (the suggestion's stream)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.options.fit_maxiter,
                                                            "ftol": self.options.fit_ftol}})
        mll.train()
        with torch.no_grad():
            value = float(mll(model(*model.train_inputs), model.train_targets).sum())
        return value, mll.eval().model

    # --- acquisition ----------------------------------------------------------------------------------------
    def _optimize(self, space: Space, model: Any, X: torch.Tensor, y: torch.Tensor, X_pending: torch.Tensor | None,
                  q: int) -> torch.Tensor | None:
        """``q x d`` points by sequential greedy: each point is optimized with the earlier ones (and the running
        trials) pending; the first with the full budget, the others with ``options.batch_share / q`` of it each
        (at least the ``min_*`` budgets), so a q = 8 batch costs 2-3 suggestions."""
        seed, best = self._call_seed(len(y)), X[y.argsort(descending=True)[: self.options.incumbents]]  # best first
        believe = self._analytic() is not None  # pending points enter as believed observations (see _acqf)
        best_f = y.max()
        if believe and X_pending is not None:
            model, best_f = _believe(model, X_pending, best_f)
        chosen: list[torch.Tensor] = []
        for i in range(1 if self.acquisition == "ts" else q):
            if believe and chosen:  # one more believed point: a low-rank update of the previous model's caches
                model, best_f = _believe(model, chosen[-1], best_f)
            waiting = [] if believe else [t for t in (X_pending, *chosen) if t is not None]
            acqf = None if self.acquisition == "ts" else self._acqf(model, X, best_f,
                                                                     torch.cat(waiting) if waiting else None)
            try:  # a study never stops for the model: what is missing is filled with random points
                chosen.append(self._thompson(space, model, q, X) if acqf is None else maximize_acquisition(
                    space, acqf, self.options, seed=seed + i, share=1.0 if i == 0 else self.options.batch_share / q,
                    starts=best))
            except Exception as e:
                log.warning("GP acquisition optimization failed (%s: %s); proposing random points",
                            type(e).__name__, e)
                break
        return torch.cat(chosen) if chosen else None

    def _analytic(self) -> str | None:
        """The analytic BoTorch class of the acquisition, when it has one."""
        return ACQUISITIONS[self.acquisition][0] if isinstance(self.acquisition, str) else None

    def _acqf(self, model: Any, X: torch.Tensor, best_f: torch.Tensor, X_pending: torch.Tensor | None) -> Any:
        """The acquisition function of one point.

        Analytic where the acquisition has an analytic form: the caller has already conditioned ``model`` on the
        pending points as *believed* observations at their posterior mean (kriging believer; for UCB this is
        GP-BUCB), which removes the variance there and so spreads a batch, at the cost of one conditioning
        instead of Monte-Carlo integration over the pending points. Monte-Carlo acquisitions and classes get
        ``X_pending``.
        """
        analytic = self._analytic()
        seed = self._call_seed(len(X))
        sampler = SobolQMCNormalSampler(torch.Size([self.options.mc_samples]), seed=seed)
        kwargs = {"model": model, "best_f": best_f, "X_baseline": X, "X_pending": X_pending,
                  "beta": self.beta**2, "sampler": sampler, "prune_baseline": True, "cache_root": True}
        if isinstance(self.acquisition, str):
            cls = getattr(acq, cast(str, analytic or ACQUISITIONS[self.acquisition][1]))  # "ts" builds none
        else:
            cls = self.acquisition
        accepted = inspect.signature(cls).parameters
        try:
            # qLogNEI prunes its baseline with an unseeded sampler: the suggestion's stream
            return cls(**{k: v for k, v in kwargs.items() if k in accepted and (v is not None or k == "X_pending")})
        except TypeError as e:
            raise TypeError(f"GP: acquisition={cls.__name__} cannot be built from {sorted(kwargs)} ({e}); pass a "
                            "class whose other arguments have defaults, or a name from "
                            f"{sorted(ACQUISITIONS)}") from e

    def _thompson(self, space: Space, model: Any, q: int, X: torch.Tensor) -> torch.Tensor:
        """``q`` Thompson samples: pathwise posterior draws, each maximized over Sobol points and perturbed data."""
        o, seed = self.options, self._call_seed(len(X))
        generator = torch.Generator(device=X.device).manual_seed(seed)
        bounds = space.bounds(device=X.device, dtype=X.dtype)
        cand = draw_sobol_samples(bounds, o.ts_candidates, 1, seed=seed).squeeze(1)
        noise = torch.randn(o.ts_perturbations, *X.shape, generator=generator, device=X.device, dtype=X.dtype)
        near = X.unsqueeze(0) + o.ts_perturbation_scale * noise  # ts_perturbations x n x d
        cand = space.round(torch.cat([cand, near.reshape(-1, X.shape[-1]).clamp(0, 1)]))
        with torch.no_grad():
            try:
                # the paths draw their random features from the suggestion's stream
                values = draw_matheron_paths(model, sample_shape=torch.Size([q]))(cand).reshape(q, -1)  # q x m
            except NotImplementedError:  # no pathwise features for the categorical kernel: sample jointly
                keep = torch.randperm(len(cand), generator=generator, device=X.device)
                cand = cand[keep[: int(o.ts_candidates * o.ts_joint_share)]]
                sampler = SobolQMCNormalSampler(torch.Size([q]), seed=seed)
                values = sampler(model.posterior(cand)).reshape(q, -1)
        return cand[values.argmax(dim=-1)]

    # --- a look inside, for plots and demos -----------------------------------------------------------------
    def posterior(self, space: Space, trials: Sequence[TrialRecord], X: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fitted GP at ``X`` (``m x d`` in the unit cube), its mean in the user's sign.

        The model is fitted on scores (larger is better); for plotting next to the trials' values, its mean is
        turned back to the user's sign here (``observations.user_values``), the one place the GP does so.

        Returns:
            ``(mean, std, acquisition)``, each of length ``m``: the posterior mean and standard deviation of the
            objective as the user states it (mode ``"min"`` means lower is better), and this searcher's
            acquisition value for one point (larger is chosen next).
        """
        Xo, y = self._data(space, trials)
        if len(y) < 2:
            raise ValueError(f"GP.posterior: needs at least 2 finished trials, got {len(y)}")
        X = X.to(Xo)
        with _seeded(self._call_seed(len(trials)), Xo.device):
            model = self._fit(space, Xo, y, None)[1]
            with torch.no_grad():
                post = model.posterior(X)
                acqf = self._acqf(model, Xo, y.max(), None) if self.acquisition != "ts" else None
                a = acqf(X.unsqueeze(-2)) if acqf is not None else post.mean.squeeze(-1)
        return user_values(trials, post.mean.squeeze(-1)), post.variance.clamp_min(0).sqrt().squeeze(-1), a

    def __repr__(self) -> str:
        return f"GP(acquisition={self.acquisition!r}, beta={self.beta}, n_initial={self.n_initial}, seed={self.seed})"


def build_model(space: Space, X: torch.Tensor, y: torch.Tensor, options: GPOptions | None = None) -> Any:
    """A BoTorch GP on ``n x d`` inputs in the unit cube and ``n`` scores (``Standardize``; the kernel, kernel
    priors, noise floor and noise prior of ``options``)."""
    options = options or GPOptions()
    prior = GammaPrior(*options.noise_prior) if options.noise_prior else LogNormalPrior(*BOTORCH_NOISE_PRIOR)
    init = max(float(prior.mode), 2 * options.min_noise)
    likelihood = GaussianLikelihood(noise_prior=prior, noise_constraint=GreaterThan(
        options.min_noise, transform=None, initial_value=init)).to(X)
    Y = y.unsqueeze(-1)
    if options.kernel == "botorch":
        if space.categorical_dims:
            return MixedSingleTaskGP(X, Y, cat_dims=space.categorical_dims, likelihood=likelihood)
        return SingleTaskGP(X, Y, likelihood=likelihood)
    cat, cont = list(space.categorical_dims), [j for j in range(X.shape[-1]) if j not in space.categorical_dims]
    kernel = MaternKernel(nu=2.5, ard_num_dims=len(cont), active_dims=cont if cat else None,
                          lengthscale_prior=UnitLengthscalePrior(options.lengthscale_rate),
                          lengthscale_constraint=GreaterThan(options.min_lengthscale)) if cont else None
    if cat:  # one product kernel: cheaper per call than MixedSingleTaskGP's sum of products
        categorical = CategoricalKernel(ard_num_dims=len(cat), active_dims=cat)
        kernel = categorical if kernel is None else kernel * categorical
    covar = ScaleKernel(kernel, outputscale_prior=GammaPrior(*options.outputscale_prior))
    return SingleTaskGP(X, Y, likelihood=likelihood, covar_module=covar)


class UnitLengthscalePrior(_Prior):
    """The lengthscale prior of ``GPOptions(kernel="matern")``: ``log p(l) = -rate * (l**2 + l**-2)`` (+ const).

    Symmetric in ``log l`` about ``l = 1``, the width of the unit cube: nearly flat within a factor of ~3, firm
    beyond a factor of ~10 either way (Optuna's GPSampler puts the same shape on ``1 / l**2``). Unlike BoTorch's
    dimension-scaled LogNormal, whose median lengthscale grows with ``sqrt(d)``, it does not push a
    6-dimensional problem towards a smooth, nearly linear fit, which stalls in a local optimum on Hartmann6.
    """

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, rate: float = 0.1) -> None:
        super().__init__(validate_args=False)
        self.rate = rate

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -self.rate * (x**2 + x**-2)


def maximize_acquisition(space: Space, acqf: Any, options: GPOptions, seed: int, *, share: float = 1.0,
                         starts: torch.Tensor | None = None) -> torch.Tensor:
    """Maximize a one-point ``acqf`` over the space: a ``1 x d`` snapped point.

    The starts of the local optimization are picked (Boltzmann-weighted by acquisition value, BoTorch's
    ``initialize_q_batch`` rule) from ``raw_samples`` Sobol points and Gaussian perturbations of ``starts`` (the
    best observed points), and the first of ``starts`` itself is always one of them: near an optimum, improving
    on the incumbent is where the acquisition's maximum usually is, and a global sample rarely lands close
    enough. Continuous and integer spaces then run ``optimize_acqf`` (integers relaxed, then snapped; restarts in
    one batch). Spaces with choices use ``optimize_acqf_mixed_alternating``: local search over the categorical
    and small integer columns alternates with L-BFGS-B on the rest, so its cost does not grow with the number of
    category combinations (``optimize_acqf_mixed`` enumerates them). ``share`` scales the budget for the later
    points of a batch. Tensors take the device and dtype of the model's training inputs.
    """
    like = acqf.model.train_inputs[0]
    bounds = space.bounds(device=like.device, dtype=like.dtype)
    num_restarts = max(options.min_restarts, round(options.num_restarts * share))
    raw_samples = max(options.min_raw_samples, round(options.raw_samples * share))
    maxiter = max(options.min_maxiter, round(options.maxiter * share))
    if not space.categorical_dims:
        per_start = max(options.min_perturbations, round(options.perturbations * share))
        ics = _initial_conditions(space, acqf, num_restarts, raw_samples, seed, starts, per_start=per_start,
                                  options=options)
        # an L-BFGS-B run that ends ABNORMAL (its line search stalled at the precision limit near an optimum)
        # is no failure: BoTorch's retry would only warn, as the starts are given
        X, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=num_restarts, batch_initial_conditions=ics,
                             options={"maxiter": maxiter}, retry_on_optimization_warning=False)
        return space.round(X)
    cat = {j: space.levels(j) for j in space.categorical_dims}
    ints = {j: space.levels(j) for j in space.discrete_dims}
    fixed = {j: v[0] for j, v in {**cat, **ints}.items() if len(v) == 1}
    for j, v in {**cat, **ints}.items():
        bounds[0, j], bounds[1, j] = min(v), max(v)
    with warnings.catch_warnings():  # its starts and moves use the global RNG: the suggestion's stream
        # its inner retry after an ABNORMAL line search (see above) warns every time
        warnings.filterwarnings("ignore", "Optimization failed in `gen_candidates_scipy`", RuntimeWarning)
        X, _ = optimize_acqf_mixed_alternating(
            acqf, bounds, discrete_dims={j: v for j, v in ints.items() if j not in fixed},
            cat_dims={j: v for j, v in cat.items() if j not in fixed}, fixed_features=fixed or None,
            # starts from rounded Sobol points, not from BoTorch's default continuous relaxation: relaxed category
            # values match no observation under a categorical kernel, so every relaxed start scores the same
            # (BadInitialCandidatesWarning) and its optimization is wasted
            options={"maxiter_alternating": options.alternating_steps,
                     "maxiter_continuous": int(maxiter * options.alternating_maxiter_share),
                     "initialization_strategy": "random"},
            q=1, num_restarts=num_restarts, raw_samples=raw_samples)
    return space.round(X)


def _initial_conditions(space: Space, acqf: Any, n: int, raw_samples: int, seed: int,
                        starts: torch.Tensor | None, *, per_start: int, options: GPOptions) -> torch.Tensor:
    """``n x 1 x d`` starts: the first of ``starts``, then ``n - 1`` drawn from ``raw_samples`` Sobol points and
    ``per_start`` perturbations of each of ``starts``."""
    like = acqf.model.train_inputs[0]
    bounds = space.bounds(device=like.device, dtype=like.dtype)
    starts = starts if starts is not None and len(starts) else None
    parts = [draw_sobol_samples(bounds, raw_samples, 1, seed=seed).squeeze(1)]
    if starts is not None:
        gen = torch.Generator(device=bounds.device).manual_seed(seed)
        noise = torch.randn(len(starts), per_start, starts.shape[-1], generator=gen, device=bounds.device,
                            dtype=bounds.dtype)
        parts.append((starts.unsqueeze(1) + options.perturbation_scale * noise).reshape(-1, starts.shape[-1])
                    .clamp(0, 1))
    cand = torch.cat(parts).unsqueeze(-2)
    with torch.no_grad():
        values = torch.cat([acqf(chunk) for chunk in cand.split(options.eval_batch)])
    chosen = cand[_boltzmann(values, n if starts is None else n - 1,
                             torch.Generator(device=bounds.device).manual_seed(seed))]
    return chosen if starts is None else torch.cat([starts[:1].unsqueeze(-2), chosen])


def _boltzmann(values: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct indices of ``values`` drawn with weights ``exp(standardized value)``, the largest always among
    them: BoTorch's ``initialize_q_batch`` rule, drawn with ``generator`` (it takes none)."""
    if n >= len(values):
        return torch.arange(len(values), device=values.device)
    if values.std() == 0:  # no value is better: any n
        return torch.randperm(len(values), generator=generator, device=values.device)[:n]
    z = standardize(values)
    weights = z.exp()
    while torch.isinf(weights).any():  # too peaked: flatten until every weight is finite
        z = z / 2
        weights = z.exp()
    idx = batched_multinomial(weights, n, generator=generator)
    top = torch.max(values, dim=0).indices
    if top not in idx:
        idx[-1] = top
    return idx


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The block runs with the global RNG of the CPU (and of a CUDA ``device``) seeded with ``seed``, restored
    after it: a suggestion, for the BoTorch steps that use the global RNG and take neither a seed nor a generator
    (fit retries, pathwise samples, ``qLogNoisyExpectedImprovement``'s baseline pruning, the mixed optimizer)."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _believe(model: Any, X: torch.Tensor, best_f: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``model`` conditioned on observations at ``X`` equal to its posterior mean there, and the best score
    including them (the kriging believer)."""
    with torch.no_grad():
        believed = model.posterior(X).mean
    return model.condition_on_observations(X, believed), torch.maximum(best_f, believed.max())


def training_data(space: Space, trials: Sequence[TrialRecord], *, min_points: int = 6
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the GP is fitted on: ``n x d`` encoded configs and ``n`` scores (larger is better), float64 on the
    CPU, chosen by ``observations.observations`` (final scores, or BOHB's rung rule once trials were pruned or
    paused)."""
    pairs = observations(space, trials, min_points=min_points)
    X = space.encode([c for c, _ in pairs])
    return X, torch.tensor([s for _, s in pairs], dtype=X.dtype)
