"""Bayesian optimization: a BoTorch Gaussian process, an acquisition registry, batches with pending points.

The GP sees the unit cube (``space.encode``, float64): a ``SingleTaskGP`` with a scaled Matern-5/2 kernel (times
a categorical kernel on ``space.categorical_dims`` when the space has choices) and ``UnitLengthscalePrior``
(``GPOptions.kernel="botorch"``: BoTorch's own kernels and priors), a noise variance floor of 1e-6 with a prior
that favours small noise (``GPOptions.min_noise``, ``noise_prior``: BoTorch's 1e-4 floor keeps the GP from
interpolating an exact objective) and a ``Standardize`` outcome transform. Integers are relaxed to [0, 1] and
snapped with ``space.round``.

What the model is trained on (larger score is better):

* COMPLETED trials' ``score``; FAILED trials get the worst observed score (imputed, not excluded: a region where
  training diverges must look bad, else it looks unexplored and the acquisition keeps going back there).
* With early stopping (any PRUNED trial), the rung-aware rule of BOHB: the scores reported at the highest step
  that at least ``max(d + 2, options.min_rung_points)`` trials reached. One model sees every bracket's results.
* RUNNING trials are pending points, so parallel workers never get the same config twice: believed observations
  at the posterior mean for analytic acquisitions (kriging believer), ``X_pending`` for Monte-Carlo ones.

Example:
    >>> import torchhpo as th
    >>> space = th.Space({"x": th.Float(-1.0, 1.0)})
    >>> study = th.Study(space, mode="max", searcher=th.GP(n_initial=3, seed=0))
    >>> _ = study.optimize(lambda c, t: -c["x"] ** 2, n_trials=5, progress=False)
    >>> abs(study.best.config["x"]) < 0.5
    True
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gpytorch.priors import Prior as _Prior

from torchhpo.searchers import _key, observations
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["GP", "GPOptions", "training_data"]

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


@dataclass(frozen=True)
class GPOptions:
    """Knobs of the GP searcher that rarely need changing.

    Attributes:
        num_restarts: L-BFGS-B starts of the acquisition optimization, run as one batch.
        raw_samples: Sobol points scored to pick the starts.
        maxiter: L-BFGS-B iterations per acquisition optimization.
        fit_maxiter: L-BFGS-B iterations per hyperparameter fit (warm starts usually stop far earlier).
        fit_ftol: the fit stops when an iteration improves the marginal likelihood by less than this, relatively
            (SciPy's default 2e-9 spent two thirds of a warm fit's time on the last 1e-5 of it).
        alternating_steps: rounds of local search / L-BFGS-B of the mixed optimizer (spaces with choices).
        mc_samples: quasi-MC samples of the Monte-Carlo acquisitions.
        ts_candidates: Sobol candidates each Thompson sample is maximized over.
        warm_start: start each hyperparameter fit from the previous one (faster).
        cold_fits_below: below this many observations, also fit from BoTorch's defaults and keep the larger
            marginal likelihood.
        min_rung_points: least observations at a step for the rung-aware rule (with ``d + 2``).
        min_noise: lower bound of the noise variance (in standardized units). BoTorch's default, 1e-4, stops
            the GP from interpolating a deterministic objective and caps the precision it reaches.
        noise_prior: ``(concentration, rate)`` of the Gamma prior on the noise variance; Optuna's ``(1.1, 30)``
            is nearly flat near zero, so exact objectives get a tiny noise and noisy ones still fit theirs.
            ``None``: BoTorch's LogNormal(-4, 1), which pulls the noise towards ~1e-2.
        kernel: ``"matern"``: a Matern-5/2 kernel with ``UnitLengthscalePrior`` on the continuous and integer
            columns times BoTorch's categorical kernel on the choices, scaled, with a Gamma(2, 1) prior on the
            scale; ``"botorch"``: BoTorch's defaults (``SingleTaskGP``: RBF with a LogNormal lengthscale prior
            scaled by the dimension; ``MixedSingleTaskGP`` when there are choices).
        gpu_min_points: with ``device="auto"``, use the GPU from this many observations on. A guess (no GPU was
            at hand when it was chosen): below ~1,000 points a 64-bit GP is launch-bound and the CPU wins;
            ``benchmarks/gpu.py`` measures the crossing point.
    """

    num_restarts: int = 8
    raw_samples: int = 256
    maxiter: int = 60
    fit_maxiter: int = 100
    fit_ftol: float = 1e-6
    alternating_steps: int = 4
    mc_samples: int = 64
    ts_candidates: int = 2048
    warm_start: bool = True
    cold_fits_below: int = 20
    min_rung_points: int = 6
    min_noise: float = 1e-6
    noise_prior: tuple[float, float] | None = (1.1, 30.0)
    gpu_min_points: int = 1000
    kernel: str = "matern"

    def __post_init__(self) -> None:
        if self.kernel not in ("matern", "botorch"):
            raise ValueError(f"GPOptions: kernel={self.kernel!r} must be 'matern' or 'botorch'")


class GP(Described):
    """Gaussian-process Bayesian optimization (BoTorch), after ``n_initial`` Sobol points.

    Args:
        acquisition: ``"logei"`` (default: log expected improvement over the best observed score; analytic for
            one point, Monte Carlo with pending points), ``"qlognei"`` (noisy log expected improvement: Monte
            Carlo always, ~2x the cost, for objectives whose noise makes the best observed score misleading),
            ``"ei"``, ``"pi"``,
            ``"ucb"``, ``"qucb"``, ``"ts"`` (Thompson sampling on pathwise posterior samples), or a BoTorch
            ``AcquisitionFunction`` class (built with the keyword arguments its signature takes among
            ``model``, ``best_f``, ``X_baseline``, ``X_pending``, ``beta``, ``sampler``).
        beta: the multiplier of sigma in UCB: ``alpha = mu + beta * sigma`` (the lecture's ``mu + 2 sigma`` is
            ``beta=2``). BoTorch's own ``beta`` multiplies ``sigma`` by ``sqrt(beta)``; we pass ``beta**2``.
        n_initial: Sobol points before the GP (counting every trial, enqueued ones included);
            default ``min(10, max(5, d + 2))``.
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
        from botorch.acquisition import AcquisitionFunction

        if isinstance(acquisition, str) and acquisition not in ACQUISITIONS:
            raise ValueError(f"GP: acquisition={acquisition!r} is unknown; choose one of {sorted(ACQUISITIONS)} "
                             "or pass a botorch AcquisitionFunction class")
        if not isinstance(acquisition, str) and not (
                isinstance(acquisition, type) and issubclass(acquisition, AcquisitionFunction)):
            raise TypeError(f"GP: acquisition must be a name or an AcquisitionFunction class, got {acquisition!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"GP: beta={beta!r} must be a number >= 0 (the multiplier of sigma in UCB)")
        if n_initial is not None and (isinstance(n_initial, bool) or not isinstance(n_initial, int) or n_initial < 1):
            raise ValueError(f"GP: n_initial={n_initial!r} must be an int >= 1 (or None for the default)")
        if device not in ("auto", "cpu", "cuda") and not isinstance(device, torch.device):
            raise ValueError(f"GP: device={device!r} must be 'auto', 'cpu', 'cuda' or a torch.device")
        self.acquisition = acquisition
        self.beta = float(beta)
        self.n_initial = n_initial
        self.device = device
        self.seed = int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else int(seed)
        self.options = options or GPOptions()
        self._warm: dict[str, dict[str, torch.Tensor]] = {}  # model key -> hyperparameters of the last fit
        self.timings: dict[str, float] = {}  # CPU seconds of the last ask: "fit", "acquisition"

    # --- the searcher ---------------------------------------------------------------------------------------
    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        """``n`` configs: Sobol points while fewer than ``n_initial`` trials exist, then GP proposals."""
        n_init = self.n_initial or min(10, max(5, space.dim + 2))
        n_sobol = min(n, max(0, n_init - len(trials)))
        out = space.sobol(n_sobol, seed=self.seed, skip=len(trials)) if n_sobol else []
        if len(out) < n:
            out += self._propose(space, trials, n - len(out), taken=out)
        return out

    def _propose(self, space: Space, trials: Sequence[TrialRecord], n: int, taken: list[Config]) -> list[Config]:
        X, y = training_data(space, trials, min_points=self.options.min_rung_points)
        tkwargs = self._tkwargs(len(y))
        running = [t.config for t in trials if t.status is Status.RUNNING] + taken
        X_pending = space.encode(running, **tkwargs) if running else None
        X_new = None
        if len(y) >= 2:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._call_seed(len(trials)))
                model = self._fit_or_none(space, X.to(**tkwargs), y.to(**tkwargs))
                if model is not None:
                    X_new = self._optimize(space, model, X.to(**tkwargs), y.to(**tkwargs), X_pending, n)
        seen = {_key(t.config) for t in trials} | {_key(c) for c in taken}
        return self._dedupe(space, [] if X_new is None else space.decode(X_new), seen, n, len(trials))

    def _tkwargs(self, n_obs: int) -> dict[str, Any]:
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and n_obs >= self.options.gpu_min_points else "cpu"
        return {"device": torch.device(device), "dtype": torch.float64}

    def _call_seed(self, n_trials: int) -> int:
        return zlib.crc32(f"{self.seed}/{n_trials}".encode())

    def _dedupe(self, space: Space, configs: list[Config], seen: set[str], n: int, n_trials: int) -> list[Config]:
        """Drop proposals equal to an existing, pending or earlier one; fill up with random points."""
        out: list[Config] = []
        for c in configs:
            if _key(c) not in seen:
                seen.add(_key(c))
                out.append(c)
        attempt = 0
        while len(out) < n and attempt < 100:
            c = space.sample(1, seed=np.random.SeedSequence([self.seed, n_trials, attempt]))[0]
            attempt += 1
            if _key(c) not in seen:
                seen.add(_key(c))
                out.append(c)
        return out[:n]

    # --- the model ------------------------------------------------------------------------------------------
    def _fit_or_none(self, space: Space, X: torch.Tensor, y: torch.Tensor) -> Any:
        """The fitted model, or ``None`` (and a warning) when every start fails: the caller then proposes randomly.

        Starts: the previous fit's hyperparameters (warm, fast) and BoTorch's defaults (cold); both below
        ``options.cold_fits_below`` observations, keeping the larger marginal likelihood (with few points a warm
        start alone can stay in a poor optimum: it missed the 1-D demo's peak on one seed of ten), else warm only.
        """
        import time

        t0 = time.process_time()
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
        self.timings = {"fit": time.process_time() - t0}
        if not fits:
            return None
        model = max(fits, key=lambda f: f[0])[1]
        self._warm[key] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                           if "outcome_transform" not in k and "noise" not in k}
        return model

    def _fit(self, space: Space, X: torch.Tensor, y: torch.Tensor, state: dict[str, torch.Tensor] | None
             ) -> tuple[float, Any]:
        """(marginal log likelihood with priors, model in eval mode), fitted from ``state`` or the defaults."""
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = build_model(space, X, y, self.options)
        if state is not None:
            model.load_state_dict({k: v.to(X) for k, v in state.items()}, strict=False)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.options.fit_maxiter,
                                                            "ftol": self.options.fit_ftol}})
        mll.train()
        with torch.no_grad():
            value = float(mll(model(*model.train_inputs), model.train_targets).sum())
        mll.eval()
        return value, model

    # --- acquisition ----------------------------------------------------------------------------------------
    def _optimize(self, space: Space, model: Any, X: torch.Tensor, y: torch.Tensor, X_pending: torch.Tensor | None,
                  q: int) -> torch.Tensor | None:
        """``q x d`` points by sequential greedy: each point is optimized with the earlier ones (and the running
        trials) pending; the first with the full budget, the others with ``1 / (2 q)`` of it each (at least 2 restarts and
        3 iterations), so a q = 8 batch costs 2-3 suggestions (the first point matters most; the others mostly
        need to be spread)."""
        import time

        t0 = time.process_time()
        seed, best = self._call_seed(len(y)), _best(X, y)
        believe = self._analytic() is not None  # pending points enter as believed observations (see _acqf)
        best_f = y.max()
        if believe and X_pending is not None:
            model, best_f = _believe(model, X_pending, best_f)
        chosen: list[torch.Tensor] = []
        for i in range(1 if self.acquisition == "ts" else q):
            if believe and chosen:  # one more believed point: a low-rank update of the previous model's caches
                model, best_f = _believe(model, chosen[-1], best_f)
            pending = [] if believe else [t for t in (X_pending, *chosen) if t is not None]
            acqf = None if self.acquisition == "ts" else self._acqf(model, X, best_f,
                                                                     torch.cat(pending) if pending else None)
            try:  # a study never stops for the model: what is missing is filled with random points
                chosen.append(self._thompson(space, model, q, X) if acqf is None else
                              optimize(space, acqf, self.options, seed=seed + i, share=1.0 if i == 0 else 0.5 / q,
                                       starts=best))
            except Exception as e:
                log.warning("GP acquisition optimization failed (%s: %s); proposing random points",
                            type(e).__name__, e)
                break
        X_new = torch.cat(chosen) if chosen else None
        self.timings["acquisition"] = time.process_time() - t0
        return X_new

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
        from botorch import acquisition as acq
        from botorch.sampling import SobolQMCNormalSampler

        analytic = self._analytic()
        sampler = SobolQMCNormalSampler(torch.Size([self.options.mc_samples]), seed=self._call_seed(len(X)))
        kwargs = {"model": model, "best_f": best_f, "X_baseline": X, "X_pending": X_pending,
                  "beta": self.beta**2, "sampler": sampler, "prune_baseline": True, "cache_root": True}
        if isinstance(self.acquisition, str):
            cls = getattr(acq, analytic or ACQUISITIONS[self.acquisition][1])
        else:
            cls = self.acquisition
        accepted = inspect.signature(cls).parameters
        try:
            return cls(**{k: v for k, v in kwargs.items() if k in accepted and (v is not None or k == "X_pending")})
        except TypeError as e:
            raise TypeError(f"GP: acquisition={cls.__name__} cannot be built from {sorted(kwargs)} ({e}); pass a "
                            "class whose other arguments have defaults, or a name from "
                            f"{sorted(ACQUISITIONS)}") from e

    def _thompson(self, space: Space, model: Any, q: int, X: torch.Tensor) -> torch.Tensor:
        """``q`` Thompson samples: pathwise posterior draws, each maximized over a shared Sobol candidate set."""
        from botorch.sampling.pathwise import draw_matheron_paths
        from botorch.utils.sampling import draw_sobol_samples

        bounds = space.bounds(device=X.device, dtype=X.dtype)
        cand = draw_sobol_samples(bounds, self.options.ts_candidates, 1, seed=self._call_seed(len(X))).squeeze(1)
        near = X.unsqueeze(0) + 0.02 * torch.randn(8, *X.shape, device=X.device, dtype=X.dtype)  # 8 x n x d
        cand = space.round(torch.cat([cand, near.reshape(-1, X.shape[-1]).clamp(0, 1)]))
        with torch.no_grad():
            try:
                values = draw_matheron_paths(model, sample_shape=torch.Size([q]))(cand).reshape(q, -1)  # q x m
            except NotImplementedError:  # no pathwise features for the categorical kernel: sample jointly
                cand = cand[torch.randperm(len(cand), device=X.device)[: self.options.ts_candidates // 4]]
                values = model.posterior(cand).rsample(torch.Size([q])).reshape(q, -1)
        return cand[values.argmax(dim=-1)]

    # --- a look inside, for plots and demos -----------------------------------------------------------------
    def posterior(self, space: Space, trials: Sequence[TrialRecord], X: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fitted GP at ``X`` (``m x d`` in the unit cube), in the user's sign.

        Returns:
            ``(mean, std, acquisition)``, each of length ``m``: the posterior mean and standard deviation of the
            objective as the user states it (mode ``"min"`` means lower is better), and this searcher's
            acquisition value for one point (larger is chosen next).
        """
        Xo, y = training_data(space, trials, min_points=self.options.min_rung_points)
        if len(y) < 2:
            raise ValueError(f"GP.posterior: needs at least 2 finished trials, got {len(y)}")
        tkwargs = self._tkwargs(len(y))
        Xo, y, X = Xo.to(**tkwargs), y.to(**tkwargs), X.to(**tkwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._call_seed(len(trials)))
            model = self._fit(space, Xo, y, None)[1]
            with torch.no_grad():
                post = model.posterior(X)
                acqf = self._acqf(model, Xo, y.max(), None) if self.acquisition != "ts" else None
                a = acqf(X.unsqueeze(-2)) if acqf is not None else post.mean.squeeze(-1)
        sign = trials[0].sign if trials else 1
        return sign * post.mean.squeeze(-1), post.variance.clamp_min(0).sqrt().squeeze(-1), a

    def __repr__(self) -> str:
        return f"GP(acquisition={self.acquisition!r}, beta={self.beta}, n_initial={self.n_initial}, seed={self.seed})"


def build_model(space: Space, X: torch.Tensor, y: torch.Tensor, options: GPOptions | None = None) -> Any:
    """A BoTorch GP on ``n x d`` inputs in the unit cube and ``n`` scores (``Standardize``; the kernel, kernel
    priors, noise floor and noise prior of ``options``)."""
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.models.kernels import CategoricalKernel
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.priors import GammaPrior, LogNormalPrior

    options = options or GPOptions()
    prior = GammaPrior(*options.noise_prior) if options.noise_prior else LogNormalPrior(-4.0, 1.0)
    init = max(float(prior.mode), 2 * options.min_noise)
    likelihood = GaussianLikelihood(noise_prior=prior, noise_constraint=GreaterThan(
        options.min_noise, transform=None, initial_value=init)).to(X)
    Y = y.unsqueeze(-1)

    if options.kernel == "botorch":
        if space.categorical_dims:
            return MixedSingleTaskGP(X, Y, cat_dims=space.categorical_dims, likelihood=likelihood)
        return SingleTaskGP(X, Y, likelihood=likelihood)
    cat = list(space.categorical_dims)
    cont = [j for j in range(X.shape[-1]) if j not in cat]
    kernel = MaternKernel(nu=2.5, ard_num_dims=len(cont), active_dims=cont if cat else None,
                          lengthscale_prior=UnitLengthscalePrior(), lengthscale_constraint=GreaterThan(1e-3)
                          ) if cont else None
    if cat:  # one product kernel: cheaper per call than MixedSingleTaskGP's sum of products
        categorical = CategoricalKernel(ard_num_dims=len(cat), active_dims=cat)
        kernel = categorical if kernel is None else kernel * categorical
    covar = ScaleKernel(kernel, outputscale_prior=GammaPrior(2.0, 1.0))
    return SingleTaskGP(X, Y, likelihood=likelihood, covar_module=covar)


class UnitLengthscalePrior(_Prior):
    """The lengthscale prior of ``GPOptions(kernel="matern")``: ``log p(l) = -rate * (l**2 + l**-2)`` (+ const).

    Symmetric in ``log l`` about ``l = 1``, the width of the unit cube: nearly flat within a factor of ~3, firm
    beyond a factor of ~10 either way (Optuna's GPSampler puts the same shape on ``1 / l**2``). Unlike BoTorch's
    dimension-scaled LogNormal, whose median lengthscale grows with ``sqrt(d)``, it does not push a
    6-dimensional problem towards a smooth, nearly linear fit: on Hartmann6 (tuning seeds) that fit stalled in the
    local optimum in most runs.
    """

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, rate: float = 0.1) -> None:
        super().__init__(validate_args=False)
        self.rate = rate

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -self.rate * (x**2 + x**-2)


def optimize(space: Space, acqf: Any, options: GPOptions, seed: int, *, share: float = 1.0,
             starts: torch.Tensor | None = None) -> torch.Tensor:
    """Maximize a one-point ``acqf`` over the space: a ``1 x d`` snapped point.

    The starts of the local optimization are picked (Boltzmann-weighted by acquisition value, BoTorch's
    ``initialize_q_batch``) from ``raw_samples`` Sobol points and Gaussian perturbations of ``starts`` (the best
    observed points), and the first of ``starts`` itself is always one of them: near an optimum, improving on
    the incumbent is where the acquisition's maximum usually is, and a global sample rarely lands close enough.
    Continuous and integer spaces then run ``optimize_acqf`` (integers relaxed, then snapped; restarts in one
    batch). Spaces with choices use ``optimize_acqf_mixed_alternating``: local search over the categorical and
    small integer columns alternates with L-BFGS-B on the rest, so its cost does not grow with the number of
    category combinations (``optimize_acqf_mixed`` enumerates them). ``share`` scales the budget (restarts,
    samples, iterations) for the later points of a batch.
    """
    from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating

    tkwargs = {"device": acqf.model.train_inputs[0].device, "dtype": torch.float64}
    bounds = space.bounds(**tkwargs)
    num_restarts = max(2, round(options.num_restarts * share))
    raw_samples = max(32, round(options.raw_samples * share))
    maxiter = max(3, round(options.maxiter * share))
    if not space.categorical_dims:
        ics = _initial_conditions(space, acqf, num_restarts, raw_samples, seed, starts, per_start=max(4, round(32 * share)))
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
    with warnings.catch_warnings():  # its inner retry after an ABNORMAL line search (see above) warns every time
        warnings.filterwarnings("ignore", "Optimization failed in `gen_candidates_scipy`", RuntimeWarning)
        X, _ = optimize_acqf_mixed_alternating(
            acqf, bounds, discrete_dims={j: v for j, v in ints.items() if j not in fixed},
            cat_dims={j: v for j, v in cat.items() if j not in fixed}, fixed_features=fixed or None,
            # starts from rounded Sobol points, not from BoTorch's default continuous relaxation: relaxed category
            # values match no observation under a categorical kernel, so every relaxed candidate looked the same
            # (BadInitialCandidatesWarning) and that optimization was wasted (mixed problem, tuning seeds: median
            # log10 regret -5.29 vs -5.47, IQR [-5.55, -4.41] vs [-5.99, -4.11], and a third cheaper)
            options={"maxiter_alternating": options.alternating_steps, "maxiter_continuous": maxiter // 4,
                     "initialization_strategy": "random"},
            q=1, num_restarts=num_restarts, raw_samples=raw_samples)
    return space.round(X)


def _initial_conditions(space: Space, acqf: Any, n: int, raw_samples: int, seed: int,
                        starts: torch.Tensor | None, per_start: int = 32) -> torch.Tensor:
    """``n x 1 x d`` starts: the first of ``starts``, then ``n - 1`` drawn from ``raw_samples`` Sobol points and
    ``per_start`` perturbations of each of ``starts``."""
    from botorch.optim.initializers import initialize_q_batch
    from botorch.utils.sampling import draw_sobol_samples

    bounds = space.bounds(device=acqf.model.train_inputs[0].device, dtype=torch.float64)
    starts = starts if starts is not None and len(starts) else None
    cand = [draw_sobol_samples(bounds, raw_samples, 1, seed=seed).squeeze(1)]
    if starts is not None:
        gen = torch.Generator(device=bounds.device).manual_seed(seed)
        noise = torch.randn(len(starts), per_start, starts.shape[-1], generator=gen, device=bounds.device, dtype=bounds.dtype)
        cand.append((starts.unsqueeze(1) + 0.05 * noise).reshape(-1, starts.shape[-1]).clamp(0, 1))
    cand = torch.cat(cand).unsqueeze(-2)
    with torch.no_grad():
        values = torch.cat([acqf(chunk) for chunk in cand.split(2048)])
    torch.manual_seed(seed)
    chosen, _ = initialize_q_batch(cand, values, n if starts is None else n - 1)
    return chosen if starts is None else torch.cat([starts[:1].unsqueeze(-2), chosen])


def _believe(model: Any, X: torch.Tensor, best_f: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``model`` conditioned on observations at ``X`` equal to its posterior mean there, and the best score
    including them (the kriging believer)."""
    with torch.no_grad():
        believed = model.posterior(X).mean
    return model.condition_on_observations(X, believed), torch.maximum(best_f, believed.max())


def _best(X: torch.Tensor, y: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The ``k`` best observed points, best first."""
    return X[y.argsort(descending=True)[:k]]


def training_data(space: Space, trials: Sequence[TrialRecord], *, min_points: int = 6
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the GP is fitted on: ``n x d`` encoded configs and ``n`` scores (larger is better), chosen by
    ``searchers.observations`` (final scores, or BOHB's rung rule once trials were pruned or paused)."""
    pairs = observations(space, trials, min_points=min_points)
    X = space.encode([c for c, _ in pairs])
    return X, torch.tensor([s for _, s in pairs], dtype=torch.float64)
