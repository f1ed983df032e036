"""The GP searcher: ``GP.ask`` fits the model on the history and maximizes the acquisition (see the package's
docstring for what it is trained on and how its randomness is seeded)."""

from __future__ import annotations

import inspect
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch
from botorch import acquisition as acq
from botorch.sampling import SobolQMCNormalSampler
from botorch.sampling.pathwise import draw_matheron_paths
from botorch.utils.sampling import draw_sobol_samples

from torchhpo.checks import integer, number
from torchhpo.gp.acquisition import CachedLogEI, maximize_acquisition
from torchhpo.gp.model import CachedGP, _believe, build_model, fit, supported, training_data
from torchhpo.gp.options import ACQUISITIONS, GPOptions
from torchhpo.observations import config_key, fresh_seed, pending, tried, user_values
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.threads import model_threads
from torchhpo.trial import TrialRecord

log = logging.getLogger("torchhpo.gp")  # the package's logger, where users look


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
    the history: a fit starts warm only from one on a subset of the current observations (an earlier state of the
    same history, never another study's), else cold. A searcher that resumes a study without its past fits may
    therefore propose slightly differently; ``GPOptions(warm_start=False)`` makes suggestions a function of the
    history alone.
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
        # model key -> (the observations of the last fit, its hyperparameters)
        self._warm: dict[str, tuple[frozenset[bytes], dict[str, torch.Tensor]]] = {}
        self._last: dict[str, Any] = {}  # model key -> the last fitted model (its observations: _warm's)

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
            with _seeded(self._call_seed(len(trials)), X.device), model_threads(len(y), X.device):
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

        Starts: the previous fit's hyperparameters (warm, fast) when its observations are among the current ones,
        and BoTorch's defaults (cold); both below ``options.cold_fits_below`` observations, keeping the larger
        marginal likelihood (with few points a warm start alone can stay in a poor optimum), else warm only.

        With ``options.warm_start``, observations identical to the last fit's reuse that fit as it is: under a rung
        scheduler most asks see no new observation of the rung the model is fitted on (the results that arrived
        were at lower rungs), and refitting the same data would cost a full fit for nothing.
        """
        key = f"{bool(space.categorical_dims)}/{json.dumps(space.to_dict(), sort_keys=True)}"
        rows = frozenset(row.tobytes() for row in torch.cat([X, y.unsqueeze(-1)], -1).cpu().numpy())
        if self.options.warm_start and key in self._last and self._warm[key][0] == rows:
            return self._last[key]
        warm = self.options.warm_start and key in self._warm and self._warm[key][0] <= rows
        starts = [True] if warm else []
        if not warm or len(y) < self.options.cold_fits_below:
            starts.append(False)
        fits = []
        for i, start in enumerate(starts):
            try:
                fits.append(self._fit(space, X, y, self._warm[key][1] if start else None))
            except Exception as e:
                last = i == len(starts) - 1
                if last and start:  # the warm start failed alone: try the defaults
                    starts.append(False)
                log.warning("GP fit failed (%s: %s)%s", type(e).__name__, e,
                            "; proposing a random point" if last and not start and not fits else "")
        if not fits:
            return None
        model = max(fits, key=lambda f: f[0])[1]  # the largest marginal likelihood
        self._warm[key] = rows, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                                 if "outcome_transform" not in k and "noise" not in k}
        self._last[key] = model
        return model

    def _fit(self, space: Space, X: torch.Tensor, y: torch.Tensor,
             state: dict[str, torch.Tensor] | None) -> tuple[float, Any]:
        """(marginal log likelihood with priors, model in eval mode), fitted from ``state`` or the defaults."""
        model = build_model(space, X, y, self.options)
        if state is not None:
            model.load_state_dict({k: v.to(X) for k, v in state.items()}, strict=False)
        # a failed attempt is retried from hyperparameters drawn from the priors (the suggestion's stream)
        return fit(model, self.options), model

    # --- acquisition ----------------------------------------------------------------------------------------
    def _optimize(self, space: Space, model: Any, X: torch.Tensor, y: torch.Tensor, X_pending: torch.Tensor | None,
                  q: int) -> torch.Tensor | None:
        """``q x d`` points by sequential greedy: each point is optimized with the earlier ones (and the running
        trials) pending; the first with the full budget, the others with ``options.batch_share / q`` of it each
        (at least the ``min_*`` budgets), so a q = 8 batch costs 2-3 suggestions."""
        seed, best = self._call_seed(len(y)), X[y.argsort(descending=True)[: self.options.incumbents]]  # best first
        believe = self._analytic() is not None  # pending points enter as believed observations (see _acqf)
        best_f = y.max()
        if believe and supported(model):  # one Cholesky factor for every acquisition call of the suggestion
            model = CachedGP.of(model)
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
        if isinstance(model, CachedGP) and self.acquisition == "logei":  # the default: closed-form gradients
            return CachedLogEI(model, best_f)
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

    def __getstate__(self) -> dict[str, Any]:  # the last model is a cache of the last fit: not shipped
        return {**self.__dict__, "_last": {}}

    def __repr__(self) -> str:
        return f"GP(acquisition={self.acquisition!r}, beta={self.beta}, n_initial={self.n_initial}, seed={self.seed})"


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
