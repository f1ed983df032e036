"""The GP model: its kernel and priors (``build_model``), its training data, a hyperparameter fit in plain torch
(``fit``) and a posterior from a Cholesky factor computed once (``CachedGP``) for the analytic acquisitions, whose
gradients with respect to the inputs it also gives in closed form (``CachedGP.moments``).

``fit`` and ``CachedGP`` compute the kernel of ``GPOptions(kernel="matern")`` themselves (``supported``): GPyTorch's
lazy tensors cost ~3 ms per call however small the data, which is most of a suggestion below a few hundred
observations. They read and write the BoTorch model's own parameters, so the model is the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, SingleTaskGP
from botorch.models.kernels import CategoricalKernel
from botorch.models.model import Model
from botorch.optim.utils import get_parameters_and_bounds
from botorch.posteriors import Posterior
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ProductKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from gpytorch.priors import Prior as _Prior
from gpytorch.utils.cholesky import psd_safe_cholesky
from scipy.optimize import minimize

from torchhpo.gp.options import BOTORCH_NOISE_PRIOR, GPOptions
from torchhpo.observations import observations
from torchhpo.space import Space
from torchhpo.trial import TrialRecord

SQRT5 = math.sqrt(5.0)
MIN_SQUARED_DISTANCE = 1e-30  # GPyTorch's floor: the square root's gradient stays finite at zero distance

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



def training_data(space: Space, trials: Sequence[TrialRecord], *, min_points: int = 6
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the GP is fitted on: ``n x d`` encoded configs and ``n`` scores (larger is better), float64 on the
    CPU, chosen by ``observations.observations`` (final scores, or BOHB's rung rule once trials were pruned or
    paused)."""
    pairs = observations(space, trials, min_points=min_points)
    X = space.encode([c for c, _ in pairs])
    return X, torch.tensor([s for _, s in pairs], dtype=X.dtype)


# (Matern-5/2?, active columns or None, lengthscale 1 x d') per factor of the product kernel
Factors = list[tuple[bool, "torch.Tensor | None", torch.Tensor]]


def supported(model: Any) -> bool:
    """Whether ``fit`` and ``CachedGP`` compute ``model``'s kernel: a scaled product of Matern-5/2 and categorical
    kernels (``GPOptions(kernel="matern")``) on a ``SingleTaskGP`` with one output and no input transform."""
    covar = getattr(model, "covar_module", None)
    if type(model) is not SingleTaskGP or not isinstance(covar, ScaleKernel) or model.num_outputs != 1:
        return False
    if getattr(model, "input_transform", None) is not None:
        return False
    base = covar.base_kernel
    parts = base.kernels if isinstance(base, ProductKernel) else [base]
    return all(isinstance(k, CategoricalKernel) or (isinstance(k, MaternKernel) and k.nu == 2.5) for k in parts)


def _factors(covar: ScaleKernel, detach: bool) -> tuple[torch.Tensor, Factors]:
    """The outputscale and the factors of a ``supported`` kernel; ``detach``: constants, for the acquisition."""
    base = covar.base_kernel
    parts = base.kernels if isinstance(base, ProductKernel) else [base]
    scale = covar.outputscale
    factors = [(isinstance(k, MaternKernel), k.active_dims, k.lengthscale) for k in parts]
    if detach:
        return scale.detach(), [(m, a, ls.detach()) for m, a, ls in factors]
    return scale, factors


def _distance(A: torch.Tensor, B: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """``sqrt(5) * |A - B| / ls`` for every pair (Matern-5/2's argument); centred first, as GPyTorch does, for the
    precision of the squared distances."""
    centre = B.mean(0)
    A, B = (A - centre) / ls, (B - centre) / ls
    sq = A.pow(2).sum(-1, keepdim=True) + B.pow(2).sum(-1) - 2 * A @ B.transpose(-1, -2)
    return SQRT5 * sq.clamp_min(MIN_SQUARED_DISTANCE).sqrt()


def _matern(d: torch.Tensor) -> torch.Tensor:
    return (1 + d + d.pow(2) / 3) * torch.exp(-d)


def matern52(A: torch.Tensor, B: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """The Matern-5/2 correlation of every row of ``A`` (``... x n1 x d``) with every row of ``B`` (``n2 x d``):
    ``... x n1 x n2``, the lengthscales ``1 x d``; GPyTorch's ``MaternKernel(nu=2.5)`` in plain torch."""
    return _matern(_distance(A, B, lengthscale))


def _differ(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Whether each pair's categories differ, per column: ``... x n1 x n2 x d``."""
    return A.unsqueeze(-2) != B.unsqueeze(-3)


def _kernel(scale: torch.Tensor, factors: Factors, X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
    """``scale * prod(factor(X1, X2))``: ``... x n1 x d`` and ``n2 x d`` give ``... x n1 x n2``."""
    out = scale
    for matern, dims, ls in factors:
        A, B = (X1, X2) if dims is None else (X1[..., dims], X2[..., dims])
        if matern:
            out = out * matern52(A, B, ls)
        else:
            out = out * torch.exp(-(_differ(A, B) / ls.unsqueeze(-2)).mean(-1))
    return out


def _pieces(factors: Factors, A: torch.Tensor, B: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each factor's ``n1 x n2`` values between ``A`` and ``B`` and what its gradients need: ``h = -(1 + d) e^-d /
    3`` (Matern-5/2, ``d = sqrt(5) r``) or whether the categories differ (``n1 x n2 x D``)."""
    values, aux = [], []
    for matern, dims, ls in factors:
        P, Q = (A, B) if dims is None else (A[..., dims], B[..., dims])
        if matern:
            d = _distance(P, Q, ls)
            values.append(_matern(d))
            aux.append(-(1 + d) * torch.exp(-d) / 3)
        else:
            differ = _differ(P, Q)
            values.append(torch.exp(-(differ / ls.unsqueeze(-2)).mean(-1)))
            aux.append(differ)
    return values, aux


def _others(W: torch.Tensor, scale: torch.Tensor, values: list[torch.Tensor], i: int) -> torch.Tensor:
    """``W * scale * prod(values[j] for j != i)``: the weight of factor ``i``'s derivative in the product kernel."""
    W = W * scale
    for j, v in enumerate(values):
        W = W * v if j != i else W
    return W


def _input_gradient(W: torch.Tensor, scale: torch.Tensor, factors: Factors, A: torch.Tensor, B: torch.Tensor,
                    pieces: tuple[list[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
    """``sum_q W[p, q] dk(a_p, b_q)/da_p`` for each of the ``m`` rows of ``A``: ``m x d``, in closed form. Matern-5/2:
    ``dk/da_j = 5 h (a_j - b_j) / l_j^2`` times the other factors; a categorical column's derivative is zero."""
    values, aux = pieces
    out = torch.zeros_like(A)
    for i, (matern, dims, ls) in enumerate(factors):
        if not matern:
            continue
        C = 5 * _others(W, scale, values, i) * aux[i]
        P, Q = (A, B) if dims is None else (A[..., dims], B[..., dims])
        g = (C.sum(-1, keepdim=True) * P - C @ Q) / ls.pow(2)
        if dims is None:
            out = out + g
        else:
            out[..., dims] += g
    return out


def _lengthscale_gradients(G: torch.Tensor, scale: torch.Tensor, factors: Factors, X: torch.Tensor,
                           pieces: tuple[list[torch.Tensor], list[torch.Tensor]]) -> list[torch.Tensor]:
    """``sum(G * dK/dl)`` for each factor's lengthscales ``l``, ``K = scale * prod(factors)``, in ``O(n^2 d)``
    without autograd. Matern-5/2: ``dk/dl_j = -5 h (x_j - x'_j)^2 / l_j^3``, and for a symmetric ``U``,
    ``sum_pq U_pq (x_pj - x_qj)^2 = 2 x_j^2 . U 1 - 2 x_j^T U x_j``. Categorical: ``dk/dl_j = k [x_j != x'_j] /
    (D l_j^2)``."""
    values, aux = pieces
    grads = []
    for i, (matern, dims, ls) in enumerate(factors):
        A = X if dims is None else X[..., dims]
        W = _others(G, scale, values, i)
        if matern:
            U, A = -5 * W * aux[i], A - A.mean(0)
            g = 2 * (A.pow(2) * U.sum(-1, keepdim=True)).sum(0) - 2 * (A * (U @ A)).sum(0)
            grads.append(g.reshape(ls.shape) / ls.pow(3))
        else:
            WK = W * values[i]
            g = torch.stack([(WK * aux[i][..., j]).sum() for j in range(A.shape[-1])])
            grads.append(g.reshape(ls.shape) / (A.shape[-1] * ls.pow(2)))
    return grads


def fit(model: Any, options: GPOptions) -> float:
    """Fit ``model``'s hyperparameters in place; returns the maximized marginal log likelihood with priors, per
    observation (what ``ExactMarginalLogLikelihood`` computes).

    A ``supported`` model is fitted by L-BFGS-B on the same objective as BoTorch's fit, in plain torch and with
    the gradient from one Cholesky factor: ``d(-log p)/dK = (K^-1 - a a^T) / 2`` with ``a = K^-1 (y - m)``, and
    the kernel's derivatives in closed form (``_lengthscale_gradients``), so autograd only goes through the
    parameters' transforms and priors. Other models, and a fit
    that fails (a covariance that is not positive definite even with jitter), use ``fit_gpytorch_mll``.
    """
    if supported(model):
        start = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            return _fit_exact(model, options)
        except (RuntimeError, ValueError) as e:  # not positive definite, or a step to NaN: BoTorch's fit retries
            if not any(word in str(e) for word in ("positive", "finite", "NaN")):
                raise
            model.load_state_dict(start)  # from where this fit started, not from the point that failed
            model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": options.fit_maxiter, "ftol": options.fit_ftol}})
    mll.train()
    with torch.no_grad():
        value = float(mll(model(*model.train_inputs), model.train_targets).sum())
    mll.eval()
    return value


def _fit_exact(model: Any, options: GPOptions) -> float:
    X, y = model.train_inputs[0], model.train_targets
    n = len(y)
    params, bounds = get_parameters_and_bounds(model, requires_grad=True)
    names = list(params)
    sizes = [params[k].numel() for k in names]
    priors = list(model.named_priors())
    eye = torch.eye(n, dtype=X.dtype, device=X.device)

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            for k, chunk in zip(names, torch.as_tensor(flat).to(X).split(sizes), strict=True):
                params[k].copy_(chunk.view_as(params[k]))
                params[k].grad = None
        scale, factors = _factors(model.covar_module, detach=False)
        noise, mean = model.likelihood.noise, model.mean_module.constant
        with torch.no_grad():
            constant = [(m, a, ls.detach()) for m, a, ls in factors]
            pieces = _pieces(constant, X, X)
            product = torch.stack(pieces[0]).prod(0)
            K = scale.detach() * product + noise.detach() * eye
            L = psd_safe_cholesky(K)
            r = (y - mean.detach()).unsqueeze(-1)
            a = torch.cholesky_solve(r, L)
            nll = 0.5 * (r * a).sum() + L.diagonal().log().sum() + 0.5 * n * math.log(2 * math.pi)
            G = 0.5 * (torch.cholesky_inverse(L) - a @ a.T)  # d(nll)/dK
            g_scale, g_ls = (G * product).sum(), _lengthscale_gradients(G, scale.detach(), constant, X, pieces)
        log_prior = sum(prior.log_prob(closure(module)).sum() for _, module, prior, closure, _ in priors)
        # autograd from here on only through the parameters' transforms and priors
        linear = scale * g_scale + (noise * G.diagonal().sum()).sum() - mean * a.sum()
        linear = linear + sum((ls * g).sum() for (_, _, ls), g in zip(factors, g_ls, strict=True))
        (linear - log_prior).div(n).backward()
        value = float((nll - log_prior.detach()) / n)
        grads = [params[k].grad for k in names]
        if not math.isfinite(value) or any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
            raise ValueError("GP fit: the marginal likelihood or its gradient is not finite")
        return value, torch.cat([torch.zeros_like(params[k]).reshape(-1) if g is None else g.reshape(-1)
                                 for k, g in zip(names, grads, strict=True)]).cpu().numpy()

    start = torch.cat([params[k].detach().reshape(-1) for k in names]).cpu().numpy()
    box = [b for k, size in zip(names, sizes, strict=True) for b in [bounds.get(k, (None, None))] * size]
    box = [(None if lo is None else float(lo), None if hi is None else float(hi)) for lo, hi in box]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=box,
                      options={"maxiter": options.fit_maxiter, "ftol": options.fit_ftol})
    # the parameters hold the last point evaluated: usually the optimum, else set them to it
    last = torch.cat([params[k].detach().reshape(-1) for k in names]).cpu().numpy()
    value = float(result.fun) if np.array_equal(last, result.x) else loss(result.x)[0]
    for p in params.values():
        p.grad = None
    model.eval()
    return -value


class CachedGP(Model):
    """The posterior of a fitted ``supported`` model from its training covariance's Cholesky factor, computed
    once: what the analytic acquisitions need (the marginal mean and variance of each point), for a small
    fraction of GPyTorch's cost per call. ``condition_on_observations`` adds believed points (the kriging
    believer) by extending the factor; the outcome transform's ``Standardize`` is undone as BoTorch's model does.
    """

    _num_outputs: ClassVar[int] = 1

    def __init__(self, hyper: tuple[Any, ...], X: torch.Tensor, y: torch.Tensor, L: torch.Tensor | None = None
                 ) -> None:
        super().__init__()
        self._hyper, self.X, self.y = hyper, X, y
        self._scale, self._factors, self._mean, self._noise, self._centre, self._std = hyper
        self.train_inputs = (X,)
        with torch.no_grad():
            self._L = psd_safe_cholesky(self._covariance(X)) if L is None else L
            self._alpha = torch.cholesky_solve((y - self._mean).unsqueeze(-1), self._L)

    @classmethod
    def of(cls, model: Any) -> CachedGP:
        """The cached posterior of a fitted ``supported`` BoTorch model."""
        with torch.no_grad():
            scale, factors = _factors(model.covar_module, detach=True)
            transform = model.outcome_transform
            hyper = (scale, factors, model.mean_module.constant.detach(), model.likelihood.noise.detach(),
                     transform.means.detach().reshape(()), transform.stdvs.detach().reshape(()))
        return cls(hyper, model.train_inputs[0], model.train_targets)

    def _covariance(self, X: torch.Tensor) -> torch.Tensor:
        """The covariance of noisy observations at ``X``."""
        eye = torch.eye(len(X), dtype=X.dtype, device=X.device)
        return _kernel(self._scale, self._factors, X, X) + self._noise * eye

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def posterior(self, X: torch.Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool | torch.Tensor = False, posterior_transform: Any = None,
                  **kwargs: Any) -> Posterior:
        """The marginal posterior of the objective at each of ``... x d`` points (mean and variance only)."""
        if observation_noise or posterior_transform is not None or output_indices not in (None, [0]):
            raise NotImplementedError("CachedGP: the marginal posterior of the objective only")
        mean, var = _Moments.apply(X.reshape(-1, X.shape[-1]), self)
        shape = (*X.shape[:-1], 1)
        return _Marginal(mean.reshape(shape), var.reshape(shape))

    def moments(self, X: torch.Tensor, gradients: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The posterior mean and variance of the objective at ``m x d`` points (``m`` each) and, with
        ``gradients``, their gradients with respect to the points (``m x d`` each; ``None`` without), in closed
        form: ``dmu = J^T alpha`` and ``dvar = -2 J^T K^-1 k`` with ``J = dk/dx`` (``_input_gradient``)."""
        pieces = _pieces(self._factors, X, self.X) if gradients else None
        k = _kernel(self._scale, self._factors, X, self.X) if pieces is None else \
            self._scale * torch.stack(pieces[0]).prod(0)  # m x n
        mean = self._mean + (k @ self._alpha).squeeze(-1)
        # every point a column of one triangular solve: a batch of one-column solves costs far more
        v = torch.linalg.solve_triangular(self._L, k.T, upper=False)
        var = self._scale - v.pow(2).sum(0)  # both kernels are 1 at distance 0
        mean, var_out = self._centre + self._std * mean, self._std**2 * var.clamp_min(0)
        if pieces is None:
            return mean, var_out, None, None
        w = torch.linalg.solve_triangular(self._L.T, v, upper=True).T  # (K^-1 k)^T: m x n
        d_mean = self._std * _input_gradient(self._alpha.T.expand_as(k), self._scale, self._factors, X, self.X, pieces)
        d_var = -2 * self._std**2 * _input_gradient(w, self._scale, self._factors, X, self.X, pieces)
        return mean, var_out, d_mean, d_var * (var > 0).unsqueeze(-1)  # the clamp's gradient

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, **kwargs: Any) -> CachedGP:
        """This posterior with observations ``Y`` (``k x 1``, the objective's units) at ``X`` (``k x d``) added:
        the Cholesky factor grows by ``k`` rows (``O(n^2 k)``), it is not recomputed."""
        y = (Y.reshape(-1) - self._centre) / self._std
        with torch.no_grad():
            B = torch.linalg.solve_triangular(self._L, _kernel(self._scale, self._factors, self.X, X), upper=False)
            C = psd_safe_cholesky(self._covariance(X) - B.T @ B)
            L = torch.cat([torch.cat([self._L, torch.zeros_like(B)], 1), torch.cat([B.T, C], 1)])
        return CachedGP(self._hyper, torch.cat([self.X, X]), torch.cat([self.y, y]), L)


class _Moments(torch.autograd.Function):
    """``CachedGP.moments`` as one autograd node whose backward is the closed-form gradient: an acquisition's
    L-BFGS-B step then differentiates through a handful of nodes instead of the kernel's and the solves' dozens,
    which cost most of its time below a few hundred observations."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, gp: CachedGP) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var, d_mean, d_var = gp.moments(X, gradients=ctx.needs_input_grad[0])
        ctx.save_for_backward(d_mean, d_var)
        return mean, var

    @staticmethod
    def backward(ctx: Any, g_mean: torch.Tensor, g_var: torch.Tensor) -> tuple[torch.Tensor, None]:
        d_mean, d_var = ctx.saved_tensors
        return g_mean.unsqueeze(-1) * d_mean + g_var.unsqueeze(-1) * d_var, None


class _Marginal(Posterior):
    """Marginal means and variances, ``... x 1`` each: what an analytic acquisition reads of a posterior."""

    def __init__(self, mean: torch.Tensor, variance: torch.Tensor) -> None:
        self._moments = mean, variance

    @property
    def mean(self) -> torch.Tensor:
        return self._moments[0]

    @property
    def variance(self) -> torch.Tensor:
        return self._moments[1]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    def rsample(self, sample_shape: torch.Size | None = None) -> torch.Tensor:
        raise NotImplementedError("CachedGP: marginals only; the Monte-Carlo acquisitions use the BoTorch model")


def _believe(model: Any, X: torch.Tensor, best_f: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """``model`` conditioned on observations at ``X`` equal to its posterior mean there, and the best score
    including them (the kriging believer)."""
    with torch.no_grad():
        believed = model.posterior(X).mean
    return model.condition_on_observations(X, believed), torch.maximum(best_f, believed.max())
