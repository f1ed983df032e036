"""Maximizing a one-point acquisition function over a space: seeded starts near the incumbents and from Sobol
points, then BoTorch's batched L-BFGS-B (continuous and integer spaces) or its mixed alternating optimizer."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating
from botorch.utils.sampling import batched_multinomial, draw_sobol_samples
from botorch.utils.transforms import standardize

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

