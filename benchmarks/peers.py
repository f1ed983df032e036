"""Peers that ``torchhpo.bench.compare`` runs beside torchhpo's searchers: Optuna's samplers (``OptunaPeer``,
which ships in ``torchhpo.bench`` so that ``torchhpo bench --searchers optuna-gp`` has it) and a plain BoTorch
loop, each with ``run(problem, budget, seed) -> Run`` (CPU seconds timed around each suggestion here)."""

from __future__ import annotations

import time
from typing import Any

from torchhpo.bench import OptunaPeer, Problem, Run, optuna_distributions
from torchhpo.space import Space

__all__ = ["BoTorchLoop", "OptunaPeer", "optuna_distributions"]


class BoTorchLoop:
    """BoTorch's tutorial loop: ``n_initial`` Sobol points, then SingleTaskGP + qLogNEI + ``optimize_acqf``
    (10 restarts, 512 raw samples) on the unit cube, snapped with ``space.round``: what a user would write without
    a library, the baseline for torchhpo's GP."""

    def __init__(self, n_initial: int = 10) -> None:
        self.n_initial = n_initial

    def suggest(self, space: Space, X: Any, y: Any, seed: int, q: int = 1) -> Any:
        """``q x d`` points (a joint q-batch) from ``n x d`` inputs and ``n`` values to minimize."""
        import torch
        from botorch.acquisition import qLogNoisyExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(X, -y.unsqueeze(-1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acqf = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
        cand, _ = optimize_acqf(acqf, space.bounds(dtype=torch.float64), q=q, num_restarts=10, raw_samples=512,
                                options={"seed": seed})
        return space.round(cand)

    def run(self, problem: Problem, budget: int, seed: int) -> Run:
        import torch

        space = problem.space
        configs = space.sobol(min(self.n_initial, budget), seed=seed)
        values = [problem.fn(c) for c in configs]
        seconds = [0.0] * len(values)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            while len(values) < budget:
                t0 = time.process_time()
                X = space.encode(configs)
                cand = self.suggest(space, X, torch.tensor(values, dtype=torch.float64), seed + len(values))
                configs.append(space.decode(cand)[0])
                seconds.append(time.process_time() - t0)
                values.append(problem.fn(configs[-1]))
        return Run(values, seconds)
