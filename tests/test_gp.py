import dataclasses
import json
import logging
import math

import pytest
import torch

import torchhpo as th
from torchhpo.gp import ACQUISITIONS, training_data
from torchhpo.searchers import make_searcher
from torchhpo.testing import check_searcher

FAST = th.GPOptions(num_restarts=2, raw_samples=32, maxiter=10, fit_maxiter=15, mc_samples=16, ts_candidates=256,
                    alternating_steps=1)


def _done(number, config, value, **kw):
    return th.TrialRecord(number, config, kw.pop("status", th.Status.COMPLETED), value, **kw)


@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_contract(acquisition, tkwargs):
    check_searcher(lambda seed: th.GP(acquisition, seed=seed, n_initial=3, device=tkwargs["device"], options=FAST),
                   n_history=6, batch=2)


def test_acquisition_class_is_accepted():
    from botorch.acquisition import qSimpleRegret

    check_searcher(lambda seed: th.GP(qSimpleRegret, seed=seed, n_initial=3, options=FAST),
                   spaces={"c": th.testing.CONTRACT_SPACES["continuous"]}, n_history=6, batch=2)


def test_bad_arguments_have_clear_errors():
    with pytest.raises(ValueError, match=r"acquisition='nope' is unknown.*qlognei"):
        th.GP("nope")
    with pytest.raises(TypeError, match="AcquisitionFunction"):
        th.GP(3)
    with pytest.raises(ValueError, match="beta"):
        th.GP("ucb", beta=-1)
    with pytest.raises(ValueError, match="n_initial"):
        th.GP(n_initial=0)
    with pytest.raises(ValueError, match="device"):
        th.GP(device="tpu")
    with pytest.raises(ValueError, match="kernel='rbf' must be 'matern' or 'botorch'"):
        th.GPOptions(kernel="rbf")
    with pytest.raises(ValueError, match="GPOptions: num_restarts must be a positive int, got 0"):
        th.GPOptions(num_restarts=0)
    with pytest.raises(ValueError, match="GPOptions: perturbation_scale must be a positive number, got -1"):
        th.GPOptions(perturbation_scale=-1)
    with pytest.raises(ValueError, match=r"GPOptions: batch_share must be a number in \(0, 1\], got 2"):
        th.GPOptions(batch_share=2)
    with pytest.raises(ValueError, match="default_initial"):
        th.GPOptions(default_initial=(5, 2))


def test_suggestions_neither_read_nor_change_the_global_rng():
    space = th.testing.CONTRACT_SPACES["mixed"]
    trials = [_done(i, c, -float(i % 4)) for i, c in enumerate(space.sobol(8, seed=0))]
    got = []
    for acquisition, global_seed in (("logei", 0), ("logei", 1), ("ts", 0), ("ts", 1), ("qlognei", 0)):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        got.append(th.GP(acquisition, n_initial=2, seed=0, options=FAST).ask(space, trials, 2))
        assert torch.equal(torch.get_rng_state(), state)
    assert got[0] == got[1] and got[2] == got[3]


def test_lengthscale_prior_is_symmetric_in_log_lengthscale_about_one(tkwargs):
    from torchhpo.gp import UnitLengthscalePrior

    lp = UnitLengthscalePrior().log_prob(torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], **tkwargs))
    assert torch.allclose(lp[:2], lp[3:].flip(0)) and int(lp.argmax()) == 2 and lp[0] < lp[1] - 5


@pytest.mark.parametrize("kernel", ["matern", "botorch"])
def test_kernels_fit_continuous_and_mixed_spaces(kernel, tkwargs):
    from torchhpo.gp import build_model

    for space in th.testing.CONTRACT_SPACES.values():
        X = space.encode(space.sample(8, seed=0), **tkwargs)
        model = build_model(space, X, torch.arange(8, **tkwargs), th.GPOptions(kernel=kernel))
        names = [name for name, *_ in model.named_priors()]
        assert any("lengthscale_prior" in n for n in names) or space.dim == len(space.categorical_dims)
        uses_ours = any(type(p).__name__ == "UnitLengthscalePrior" for _, _, p, *_ in model.named_priors())
        assert uses_ours == (kernel == "matern" and space.dim > len(space.categorical_dims))


def test_acquisition_search_starts_at_the_incumbent(tkwargs):
    from botorch.acquisition import LogExpectedImprovement

    from torchhpo.gp import _initial_conditions, build_model, maximize_acquisition

    space = th.Space({"a": th.Float(0.0, 1.0), "b": th.Float(0.0, 1.0)})
    X = torch.tensor([[0.1, 0.2], [0.9, 0.8], [0.5, 0.5], [0.3, 0.7]], **tkwargs)
    y = torch.tensor([0.0, 1.0, 0.5, 0.2], **tkwargs)
    acqf = LogExpectedImprovement(build_model(space, X, y), y.max())
    starts = X[y.argsort(descending=True)]
    options = th.GPOptions()
    ics = _initial_conditions(space, acqf, 4, 32, 0, starts, per_start=32, options=options)
    assert ics.shape == (4, 1, 2) and torch.equal(ics[0, 0], X[1]) and ics.device == X.device
    assert _initial_conditions(space, acqf, 4, 32, 0, None, per_start=32, options=options).shape == (4, 1, 2)
    again = _initial_conditions(space, acqf, 4, 32, 0, starts, per_start=32, options=options)
    assert torch.equal(ics, again)  # seeded by its argument alone
    best = maximize_acquisition(space, acqf, options, seed=0, starts=starts)
    assert best.shape == (1, 2) and best.dtype == X.dtype and best.device == X.device


def test_make_searcher_maps_gp():
    gp = make_searcher("gp", seed=3, acquisition="ucb")
    assert isinstance(gp, th.GP) and gp.seed == 3 and gp.acquisition == "ucb"


def _demo(x):
    return math.sin(x) * x**2 + 2 * x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_lecture_demo_maximum(seed):
    space = th.Space({"x": th.Float(-10.0, 10.0)})
    grid = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    x_star = float(grid[(torch.sin(grid) * grid**2 + 2 * grid).argmax()])
    study = th.Study(space, mode="max", searcher=th.GP("ucb", beta=2.0, seed=seed, options=FAST))
    study.optimize(lambda c, t: _demo(c["x"]), n_trials=30, progress=False)
    assert abs(study.best.config["x"] - x_star) < 0.05


def test_initial_design_continues_the_sobol_sequence_and_counts_enqueued():
    space = th.Space({"x": th.Float(0.0, 1.0), "y": th.Float(0.0, 1.0)})
    gp = th.GP(n_initial=4, seed=7)
    first = gp.ask(space, [], 2)
    trials = [_done(i, c, 0.0) for i, c in enumerate(first)]
    assert gp.ask(space, trials, 2) == space.sobol(4, seed=7)[2:]


def test_pending_configs_are_never_reproposed(tkwargs):
    space = th.Space({"k": th.Int(0, 5)})  # 6 configs: the GP must skip the 5 taken ones
    trials = [_done(i, {"k": i}, -float((i - 2) ** 2)) for i in range(3)]
    trials += [th.TrialRecord(3, {"k": 3}), th.TrialRecord(4, {"k": 4})]  # RUNNING
    for acquisition in ("qlognei", "ucb", "ts"):
        got = th.GP(acquisition, n_initial=2, seed=0, device=tkwargs["device"], options=FAST).ask(space, trials, 1)
        assert got == [{"k": 5}]


def test_batch_is_diverse_with_pending_points(tkwargs):
    space = th.testing.CONTRACT_SPACES["continuous"]
    trials = [_done(i, c, -float(i % 3)) for i, c in enumerate(space.sobol(8, seed=1))]
    trials.append(th.TrialRecord(8, space.sobol(9, seed=2)[-1]))
    batch = th.GP(seed=0, n_initial=2, device=tkwargs["device"], options=FAST).ask(space, trials, 4)
    keys = {json.dumps(c, sort_keys=True) for c in batch}
    assert len(keys) == 4 and not keys & {json.dumps(t.config, sort_keys=True) for t in trials}


def test_believed_points_added_one_at_a_time_equal_all_at_once(tkwargs):
    from torchhpo.gp import _believe, build_model

    space = th.testing.CONTRACT_SPACES["continuous"]
    X = space.encode(space.sobol(10, seed=0), **tkwargs)
    model = build_model(space, X, torch.sin(6 * X).sum(-1))
    model.eval()
    P = space.encode(space.sobol(3, seed=5), **tkwargs)
    test = space.encode(space.sobol(16, seed=9), **tkwargs)
    model.posterior(test)  # builds the caches the updates start from, as the first point's optimization does
    one, best_one = model, torch.tensor(-1e9, **tkwargs)
    for i in range(3):
        one, best_one = _believe(one, P[i:i + 1], best_one)
    joint, best_joint = _believe(model, P, torch.tensor(-1e9, **tkwargs))
    a, b = one.posterior(test), joint.posterior(test)
    assert torch.allclose(a.mean, b.mean, atol=1e-6) and torch.allclose(a.variance, b.variance, atol=1e-6)
    assert torch.isclose(best_one, best_joint)
    assert (one.posterior(P).variance < 0.5 * model.posterior(P).variance).all()  # believed points lose variance


def test_stalled_line_searches_do_not_warn_the_user():
    import warnings

    from torchhpo.bench import PROBLEMS

    problem = PROBLEMS["mixed"]  # its L-BFGS-B runs end ABNORMAL near optima: BoTorch warned (and retried) 3+ times
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = th.Study(problem.space, mode="min", searcher=th.GP(seed=0))
        study.optimize(lambda c, t: problem.fn(c), n_trials=30, progress=False)
    assert len(study.trials) == 30
    assert not [w for w in caught if "Optimization failed" in str(w.message)]


def test_failed_trials_get_the_worst_score():
    space = th.Space({"x": th.Float(0.0, 1.0)})
    trials = [_done(0, {"x": 0.1}, 1.0), _done(1, {"x": 0.5}, 3.0),
              th.TrialRecord(2, {"x": 0.9}, th.Status.FAILED, reason="diverged"), th.TrialRecord(3, {"x": 0.7})]
    X, y = training_data(space, trials)
    assert y.tolist() == [1.0, 3.0, 1.0] and X[-1, 0] == pytest.approx(0.9)


def test_rung_aware_data_uses_the_highest_step_with_enough_points():
    space = th.Space({"a": th.Float(0.0, 1.0), "b": th.Float(0.0, 1.0)})  # d + 2 = 4 < min_points = 6
    configs = space.sobol(12, seed=0)
    trials = []
    for i, c in enumerate(configs):  # 12 reach step 1, 7 reach step 3, 2 reach step 9 (BOHB-like brackets)
        top = 9 if i < 2 else 3 if i < 7 else 1
        reports = {s: -float(i) - s for s in (1, 3, 9) if s <= top}
        status = th.Status.COMPLETED if top == 9 else th.Status.PRUNED
        trials.append(th.TrialRecord(i, c, status, value=reports[top], reports=reports, sign=-1))
    X, y = training_data(space, trials, min_points=6)
    assert y.tolist() == [float(i) + 3 for i in range(7)]  # scores at step 3, sign turned
    assert torch.equal(X, space.encode(configs[:7]))
    _, y = training_data(space, trials, min_points=8)
    assert len(y) == 12  # step 3 has too few: fall back to step 1
    assert th.GP(n_initial=2, seed=0, options=FAST).ask(space, trials, 1)[0] not in configs


@pytest.mark.parametrize("case", ["constant", "duplicates", "two-points"])
def test_degenerate_data_never_crashes(case, caplog, tkwargs):
    space = th.Space({"x": th.Float(0.0, 1.0), "c": th.Choice(["a", "b"])})
    if case == "constant":
        trials = [_done(i, c, 1.0) for i, c in enumerate(space.sobol(6, seed=0))]
    elif case == "duplicates":
        trials = [_done(i, {"x": 0.5, "c": "a"}, float(i % 2)) for i in range(6)]
    else:
        trials = [_done(0, {"x": 0.2, "c": "a"}, 0.0), _done(1, {"x": 0.2, "c": "b"}, 1e12)]
    with caplog.at_level(logging.WARNING, logger="torchhpo.gp"):
        got = th.GP(n_initial=1, seed=0, device=tkwargs["device"], options=FAST).ask(space, trials, 2)
    assert len(got) == 2 and all(space.validate(c) == c for c in got)


def test_fit_failure_falls_back_to_a_random_point_with_a_warning(caplog):
    space = th.Space({"x": th.Float(0.0, 1.0)})  # an infinite score (records from elsewhere) breaks the fit
    trials = [_done(i, {"x": i / 10}, math.inf if i == 2 else float(i)) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="torchhpo.gp"):
        got = th.GP(n_initial=1, seed=0, options=FAST).ask(space, trials, 2)
    assert len(got) == 2 and all(0 <= c["x"] <= 1 for c in got) and "GP fit failed" in caplog.text


def test_acquisition_class_that_cannot_be_built_says_why():
    from botorch.acquisition import FixedFeatureAcquisitionFunction

    space = th.Space({"x": th.Float(0.0, 1.0)})
    trials = [_done(i, {"x": i / 10}, float(i)) for i in range(4)]
    with pytest.raises(TypeError, match="FixedFeatureAcquisitionFunction cannot be built"):
        th.GP(FixedFeatureAcquisitionFunction, n_initial=1, options=FAST).ask(space, trials, 1)


def test_posterior_is_in_the_users_sign(tkwargs):
    space = th.Space({"x": th.Float(0.0, 1.0)})
    trials = [_done(i, {"x": x}, (x - 0.3) ** 2, sign=-1) for i, x in enumerate([0.0, 0.25, 0.5, 0.75, 1.0])]
    X = torch.tensor([[0.25], [1.0]], **tkwargs)
    mean, std, acq = th.GP("ucb", device=tkwargs["device"], options=FAST).posterior(space, trials, X)
    assert mean.shape == std.shape == acq.shape == (2,) and mean.device == X.device and mean.dtype == X.dtype
    assert float(mean[0]) == pytest.approx(0.0025, abs=0.05) and float(mean[1]) == pytest.approx(0.49, abs=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paths():
    space = th.testing.CONTRACT_SPACES["mixed"]
    trials = [_done(i, c, -float(i % 4)) for i, c in enumerate(space.sobol(10, seed=0))]
    gp = th.GP(n_initial=2, seed=0, device="cuda", options=FAST)
    assert len(gp.ask(space, trials, 3)) == 3 and gp._tkwargs(10)["device"].type == "cuda"
    auto = th.GP(options=th.GPOptions(gpu_min_points=5))
    assert auto._tkwargs(10)["device"].type == "cuda" and auto._tkwargs(4)["device"].type == "cpu"


@pytest.mark.parametrize("name", ["continuous", "mixed"])
def test_plain_torch_fit_and_cached_posterior_match_botorch(name, tkwargs):
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from torchhpo.gp import CachedGP, build_model
    from torchhpo.gp.model import fit

    space = th.testing.CONTRACT_SPACES[name]
    X = space.encode(space.sobol(12, seed=0), **tkwargs)
    model = build_model(space, X, torch.sin(6 * X).sum(-1))
    value = fit(model, th.GPOptions())
    mll = ExactMarginalLogLikelihood(model.likelihood, model).train()
    with torch.no_grad():
        assert value == pytest.approx(float(mll(model(X), model.train_targets)), abs=1e-9)
    mll.eval()
    cached, test = CachedGP.of(model), space.encode(space.sobol(16, seed=9), **tkwargs).unsqueeze(-2)
    P = space.encode(space.sobol(2, seed=5), **tkwargs)
    for ours, theirs in ((cached, model),
                         (cached.condition_on_observations(P, cached.posterior(P).mean),
                          model.condition_on_observations(P, model.posterior(P).mean))):
        a, b = ours.posterior(test), theirs.posterior(test)
        assert torch.allclose(a.mean, b.mean, atol=1e-8) and torch.allclose(a.variance, b.variance, atol=1e-8)


@pytest.mark.parametrize("name", ["continuous", "mixed"])
def test_closed_form_acquisition_gradients_match_botorch_autograd(name, tkwargs):
    """The cached posterior's moments (one autograd node, closed-form backward) and the default acquisition's
    value and gradient (``CachedLogEI``) equal BoTorch's autograd through its own model and LogEI: at random
    points, at the corners, at an observation (variance at the floor) and after believed pending points."""
    from botorch.acquisition import LogExpectedImprovement, UpperConfidenceBound

    from torchhpo.gp import CachedGP, _believe, build_model
    from torchhpo.gp.acquisition import CachedLogEI
    from torchhpo.gp.model import fit

    space = th.testing.CONTRACT_SPACES[name]
    X = space.encode(space.sobol(12, seed=0), **tkwargs)
    y = torch.sin(6 * X).sum(-1)
    model = build_model(space, X, y)
    fit(model, th.GPOptions())
    cached, best = CachedGP.of(model), y.max()
    test = torch.cat([space.encode(space.sobol(16, seed=9), **tkwargs), torch.zeros_like(X[:1]),
                      torch.ones_like(X[:1]), X[y.argmax()].unsqueeze(0)]).unsqueeze(-2)
    P = space.encode(space.sobol(2, seed=5), **tkwargs)
    pairs = [(CachedLogEI(cached, best), LogExpectedImprovement(model, best)),
             (UpperConfidenceBound(cached, 4.0), UpperConfidenceBound(model, 4.0))]
    believed, best_b = _believe(cached, P, best)
    theirs_b, best_t = _believe(model, P, best)
    assert torch.allclose(best_b, best_t)
    pairs.append((CachedLogEI(believed, best_b), LogExpectedImprovement(theirs_b, best_t)))
    continuous = [j for j in range(X.shape[-1]) if j not in space.categorical_dims]
    for ours, theirs in pairs:
        values, grads = [], []
        for acqf in (ours, theirs):
            Z = test.clone().requires_grad_(True)
            value = acqf(Z)
            values.append(value.detach())
            grads.append(torch.autograd.grad(value.sum(), Z)[0][..., continuous])
        assert torch.allclose(values[0], values[1], rtol=1e-7, atol=1e-8), type(ours).__name__
        assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6), type(ours).__name__
        assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0


def test_a_fit_starts_warm_only_from_an_earlier_state_of_the_same_history():
    space = th.testing.CONTRACT_SPACES["continuous"]
    first = [_done(i, c, -float(i % 3)) for i, c in enumerate(space.sobol(8, seed=1))]
    other = [_done(i, c, float(i % 4)) for i, c in enumerate(space.sobol(8, seed=2))]
    options = dataclasses.replace(FAST, cold_fits_below=0)  # a warm start, when there is one, is the only start
    reused = th.GP(n_initial=2, seed=0, options=options)
    reused.ask(space, first, 1)  # a fit on observations the next history does not contain: no warm start
    assert reused.ask(space, other, 2) == th.GP(n_initial=2, seed=0, options=options).ask(space, other, 2)


def test_an_ask_on_the_observations_of_the_last_fit_reuses_it(monkeypatch):
    """Under a rung scheduler most asks bring no new observation of the rung the GP is fitted on: they reuse the
    last fit (no new fit), while a new observation, or warm_start=False, fits again."""
    import pickle

    import torchhpo.gp.searcher as gp_searcher

    fits = []
    real = gp_searcher.fit
    monkeypatch.setattr(gp_searcher, "fit", lambda model, options: fits.append(len(model.train_targets)) or
                        real(model, options))
    space = th.Space({"x": th.Float(0.0, 1.0), "y": th.Float(0.0, 1.0)})
    done = [_done(i, c, -(c["x"] - 0.3) ** 2 - c["y"]) for i, c in enumerate(space.sobol(8, seed=0))]
    options = dataclasses.replace(FAST, cold_fits_below=0)  # one start per fit
    gp = th.GP(n_initial=2, seed=0, options=options)
    first = gp.ask(space, done, 1)
    running = th.TrialRecord(len(done), first[0])  # pending: no new observation
    again = gp.ask(space, [*done, running], 1)
    assert len(fits) == 1 and again != first  # the same fit; the pending point moves the proposal
    gp.ask(space, [*done, _done(len(done), first[0], -1.0)], 1)
    assert fits[1:] == [9]
    shipped = pickle.loads(pickle.dumps(gp))
    shipped.ask(space, [*done, _done(len(done), first[0], -1.0)], 1)
    assert len(fits) == 3  # the cache does not travel: a fresh copy fits (warm, from the shipped hyperparameters)
    fits.clear()
    cold = th.GP(n_initial=2, seed=0, options=dataclasses.replace(options, warm_start=False))
    cold.ask(space, done, 1), cold.ask(space, [*done, running], 1)
    assert len(fits) == 2


def test_a_fit_whose_step_turns_nan_falls_back_to_botorchs_fit(monkeypatch, caplog):
    """An L-BFGS-B step to a NaN gradient (seen on rung data under Hyperband) must not throw the fit away: it falls
    back to BoTorch's fit from where it started, and the GP still proposes (no 'GP fit failed', no random point)."""
    import torchhpo.gp.model as gp_model

    real = gp_model._lengthscale_gradients
    monkeypatch.setattr(gp_model, "_lengthscale_gradients", lambda *a: [g * float("nan") for g in real(*a)])
    space = th.Space({"x": th.Float(0.0, 1.0), "y": th.Float(0.0, 1.0)})
    trials = [_done(i, c, (c["x"] - 0.3) ** 2 + c["y"]) for i, c in enumerate(space.sobol(8, seed=0))]
    with caplog.at_level(logging.WARNING, logger="torchhpo.gp"):
        got = th.GP(n_initial=2, seed=0, options=FAST).ask(space, trials, 1)
    assert len(got) == 1 and "GP fit failed" not in caplog.text
