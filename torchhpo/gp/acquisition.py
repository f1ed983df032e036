"""Maximizing a one-point acquisition function over a space: seeded starts near the incumbents and from Sobol
points, then BoTorch's batched L-BFGS-B (continuous and integer spaces) or its mixed alternating optimizer; and
``CachedLogEI``, the default acquisition on a ``CachedGP`` with its gradient in closed form."""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.acquisition.analytic import _log_ei_helper
from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating
from botorch.utils.sampling import batched_multinomial, draw_sobol_samples
from botorch.utils.transforms import standardize, t_batch_mode_transform

from torchhpo.gp.model import CachedGP
from torchhpo.gp.options import GPOptions
from torchhpo.space import Space


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


MIN_VARIANCE = 1e-12  # BoTorch's floor of an analytic acquisition's posterior variance


class CachedLogEI(LogExpectedImprovement):
    """BoTorch's ``LogExpectedImprovement`` of a ``CachedGP`` (maximizing), its value and gradient computed
    together in closed form as one autograd node: the L-BFGS-B steps of the acquisition optimization otherwise
    spend most of their time in autograd's pass through the kernel, the solves and log-EI's guarded branches,
    dozens of nodes on tensors of a few hundred numbers. Same values and gradients as BoTorch's class (to
    rounding), tested side by side."""

    model: CachedGP

    @t_batch_mode_transform(expected_q=1)  # type: ignore[arg-type]  # typed for the base class's self
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return _LogEI.apply(X, self)

    def value_and_gradient(self, X: torch.Tensor, gradient: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log EI at ``m x d`` points and, with ``gradient``, its ``m x d`` gradient: with ``u = (mu - f*) / sigma``,
        ``d log_ei(u) / du = Phi(u) / ei(u)``, and ``sigma = sqrt(var)``."""
        mean, var, d_mean, d_var = self.model.moments(X, gradients=gradient)
        floor = var.clamp_min(MIN_VARIANCE)
        sigma = floor.sqrt()
        u = (mean - cast(torch.Tensor, self.best_f)) / sigma
        log_ei = _log_ei_helper(u)
        value = log_ei + sigma.log()
        if d_mean is None or d_var is None:
            return value, None
        slope = torch.exp(torch.special.log_ndtr(u) - log_ei)
        d_var = d_var * (var > MIN_VARIANCE).unsqueeze(-1)  # the floor's gradient
        return value, (slope / sigma).unsqueeze(-1) * d_mean + ((1 - slope * u) / (2 * floor)).unsqueeze(-1) * d_var


class _LogEI(torch.autograd.Function):
    """``CachedLogEI`` at ``b x 1 x d`` points as one autograd node: ``b`` values."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, acqf: CachedLogEI) -> torch.Tensor:
        value, gradient = acqf.value_and_gradient(X.reshape(-1, X.shape[-1]), ctx.needs_input_grad[0])
        ctx.save_for_backward(None if gradient is None else gradient.reshape(X.shape))
        return value.reshape(X.shape[:-2])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return grad.reshape(*grad.shape, 1, 1) * gradient, None
