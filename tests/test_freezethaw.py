"""FreezeThaw: the scheduler contract, pause and resume from checkpoints through a real study, its safeguards
(never before min_epochs; the rung floor against a mispredicting model; drain), and a simulated study that beats
random search at equal epochs."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from support import ROOT

import torchhpo as th
from torchhpo.observations import PREDICTED, observations
from torchhpo.schedulers import FreezeThaw, make_scheduler
from torchhpo.simulate import Curves, Simulated, Tabulated
from torchhpo.testing import check_scheduler

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


def test_contract():
    check_scheduler(lambda seed: FreezeThaw(1, 9))


def test_by_name_and_arguments():
    assert isinstance(make_scheduler("freeze-thaw", max_epochs=27), FreezeThaw)
    assert FreezeThaw(1, 27).rungs(None) == (1, 2, 3, 5, 8, 12, 18, 27)
    assert FreezeThaw(3, 9, growth=1).rungs(None) == (3, 4, 5, 6, 7, 8, 9)
    with pytest.raises(ValueError, match="max_epochs"):
        FreezeThaw(1)
    with pytest.raises(ValueError, match="growth"):
        FreezeThaw(1, 9, growth=0.5)
    restored = pickle.loads(pickle.dumps(FreezeThaw(1, 9)))
    assert restored.rungs(None) == (1, 2, 3, 5, 8, 9)


def _train(config, trial):
    """Counts its epochs in a checkpoint: a resumed trial goes on where it paused."""
    state = trial.load() or {"epochs": []}
    loss = None
    for epoch in trial.epochs():
        state["epochs"].append(epoch)
        trial.save(state)
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        trial.report(loss)
    trial.set_attr("epochs", state["epochs"])
    return loss


def test_pauses_and_resumes_from_checkpoints_in_a_real_study(tmp_path):
    study = th.Study(SPACE, mode="min", scheduler=FreezeThaw(2, 9), storage=tmp_path / "s.db", max_epochs=9,
                     searcher=th.RandomSearch(seed=0))
    study.optimize(_train, n_trials=12, executor=th.Inline("cpu"), progress=False)
    trials = study.trials
    assert all(t.status in (th.Status.COMPLETED, th.Status.PRUNED) for t in trials)
    done = [t for t in trials if t.status is th.Status.COMPLETED]
    assert done and all(t.user_attrs["epochs"] == list(range(9)) for t in done)  # each epoch once, in order
    assert any("thawed" in t.attrs for t in trials)  # some trial was resumed after a pause
    assert all(max(t.reports) >= 2 for t in trials)  # none ended before min_epochs


def _paused(scores: list[float], step: int = 1) -> list[th.TrialRecord]:
    """Trials paused after ``step`` epochs with these losses (trial ``i`` has ``scores[i]``)."""
    return [th.TrialRecord(i, {"x": i / len(scores)}, th.Status.PAUSED, reports={s: v for s in range(1, step + 1)},
                           sign=-1)
            for i, v in enumerate(scores)]


def test_searchers_learn_from_the_curve_models_predicted_finals(tmp_path):
    study = th.Study(SPACE, mode="min", scheduler=FreezeThaw(2, 9, predictions=True), storage=tmp_path / "s.db",
                     max_epochs=9, searcher=th.RandomSearch(seed=0))
    study.optimize(_train, n_trials=12, executor=th.Inline("cpu"), progress=False)
    trials = th.Study.load(tmp_path / "s.db").trials  # what storage kept
    pruned = [t for t in trials if t.status is th.Status.PRUNED]
    assert pruned and all(math.isfinite(t.attrs[PREDICTED]) for t in pruned)
    reported = [v for t in trials for v in t.reports.values()]
    # the model's mean in the user's sign, inside the range of the reports it was fitted to
    assert all(min(reported) <= t.attrs[PREDICTED] <= max(reported) for t in pruned)
    # a pruned trial's prediction is better than (lower) its last report: every curve here falls
    assert sum(t.attrs[PREDICTED] < t.reports[max(t.reports)] for t in pruned) >= len(pruned) / 2
    # the GP sees the completed trials' finals and the predictions, in the larger-is-better sign
    pairs = observations(SPACE, trials)
    assert sorted(s for _, s in pairs) == sorted(
        [-t.value for t in trials if t.status is th.Status.COMPLETED] + [-t.attrs[PREDICTED] for t in pruned])


def test_by_default_searchers_learn_by_the_rung_rule():
    study = th.Study(SPACE, mode="min", scheduler=FreezeThaw(2, 9), max_epochs=9,
                     searcher=th.RandomSearch(seed=0))
    study.optimize(_train, n_trials=12, executor=th.Inline("cpu"), progress=False)
    assert not any(PREDICTED in t.attrs for t in study.trials)
    learned = {score for _, score in observations(SPACE, study.trials)}
    rungs = [{-t.reports[s] for t in study.trials if s in t.reports} for s in range(1, 10)]
    assert learned and any(learned <= scores for scores in rungs)  # the scores of one rung


def test_the_gp_proposes_from_the_predictions(caplog):
    study = th.Study(SPACE, mode="min", scheduler=FreezeThaw(2, 9, predictions=True), max_epochs=9,
                     searcher=th.GP(seed=0, n_initial=4))
    study.optimize(_train, n_trials=10, executor=th.Inline("cpu"), progress=False)
    assert len(study.trials) == 10 and "fit failed" not in caplog.text
    assert any(PREDICTED in t.attrs for t in study.trials)


def test_the_curve_models_kernels_equal_gpytorchs_with_their_gradients():
    """The curve model computes its kernels from the GPyTorch modules' parameters in plain torch: the same values,
    and the same gradients with respect to those parameters (what the fit's Adam steps follow)."""
    from botorch.models.kernels import ExponentialDecayKernel
    from gpytorch.kernels import MaternKernel, ScaleKernel

    from torchhpo.schedulers.curve_model import _decay, matern52

    torch.manual_seed(0)
    kt = ScaleKernel(ExponentialDecayKernel()).double()
    kx = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=3)).double()
    with torch.no_grad():  # away from the defaults
        for p in (*kt.parameters(), *kx.parameters()):
            p.add_(torch.randn_like(p))
    t = torch.rand(5, 4, dtype=torch.float64)
    X = torch.rand(7, 3, dtype=torch.float64)
    pairs = [(_decay(kt, t, t), kt(t.unsqueeze(-1)).to_dense()),
             (_decay(kt, t[:, :1], t), kt(t[:, :1].unsqueeze(-1), t.unsqueeze(-1)).to_dense()),
             (kx.outputscale * matern52(X, X, kx.base_kernel.lengthscale), kx(X).to_dense())]
    for ours, theirs in pairs:
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
        params = [p for p in (*kt.parameters(), *kx.parameters())]
        a = torch.autograd.grad(ours.sum(), params, allow_unused=True, retain_graph=True)
        b = torch.autograd.grad(theirs.sum(), params, allow_unused=True, retain_graph=True)
        for ga, gb in zip(a, b, strict=True):
            assert (ga is None) == (gb is None) and (ga is None or torch.allclose(ga, gb, rtol=1e-8, atol=1e-10))


def test_unwarp_inverts_warp_within_the_reports_range():
    ft = FreezeThaw(1, 9, floor=None)
    records = _paused([0.9, 0.5, 0.7, 0.2, 0.4])
    ft.chances(records)
    seen = torch.tensor([0.1, 0.4, 0.7, 1.3], dtype=torch.float64)
    model = ft.model
    model._seen = seen
    assert torch.allclose(model.unwarp(model.warp(seen)), seen)
    assert model.unwarp(torch.tensor([-50.0, 50.0], dtype=torch.float64)).tolist() == [0.1, 1.3]  # clamped
    middle = model.unwarp((model.warp(seen[:1]) + model.warp(seen[1:2])) / 2)
    assert 0.1 < float(middle) < 0.4


def test_the_floor_promotes_the_best_whatever_the_model_says(monkeypatch):
    losses = [1.0 + i / 10 for i in range(18)]  # trial 0 is the best at epoch 1
    # chances are log-probabilities of beating the incumbent; this model thinks the worst is the most promising
    inverted = {i: math.log(i / 18) if i else -math.inf for i in range(18)}
    monkeypatch.setattr(FreezeThaw, "chances", lambda self, peers: {i: -math.inf for i in range(18)})
    peers = _paused(losses)
    assert FreezeThaw(1, 27).promote(peers) == {0: th.Decision.CONTINUE, 1: th.Decision.CONTINUE}  # 18 // 9
    assert peers[0].attrs["until"] == 3  # on to the next floor rung
    assert FreezeThaw(1, 27, floor=None).promote(_paused(losses)) == {}  # the hopeless model alone: new configs
    monkeypatch.setattr(FreezeThaw, "chances", lambda self, peers: inverted)
    decided = list(FreezeThaw(1, 27).promote(_paused(losses)))
    assert decided[:2] == [0, 1] and 17 in decided  # the floor first, then the model's choice


def test_never_pauses_or_stops_before_min_epochs():
    ft = FreezeThaw(3, 9)
    record = th.TrialRecord(0, {"x": 0.5}, reports={1: 1.0, 2: 0.9, 3: 0.8}, sign=-1)
    assert [ft.on_report(record, s, -record.reports[s], [record]) for s in (1, 2)] == [th.Decision.CONTINUE] * 2
    assert ft.on_report(record, 3, -0.8, [record]) is th.Decision.PAUSE
    record.attrs["until"] = 5  # resumed up to step 5
    assert ft.on_report(record, 4, -0.7, [record]) is th.Decision.CONTINUE
    assert ft.on_report(record, 5, -0.6, [record]) is th.Decision.PAUSE


def test_drain_decides_every_paused_trial(monkeypatch):
    monkeypatch.setattr(FreezeThaw, "chances", lambda self, peers: {0: math.log(0.5), 1: math.log(0.001), 2: math.log(0.2)})
    decided = FreezeThaw(1, 27, floor=None).promote(_paused([1.0, 2.0, 1.5]), drain=True)
    assert decided == {0: th.Decision.CONTINUE, 2: th.Decision.CONTINUE, 1: th.Decision.STOP}


def _best_after(scheduler, budget: int) -> float:
    curves = Curves.load("digits_cnn")
    study = th.Study(curves.space, mode="min", searcher=Tabulated(curves, th.RandomSearch(seed=3)),
                     scheduler=scheduler, seed=3, max_epochs=curves.epochs)
    study.optimize(None, n_trials=len(curves.configs), executor=Simulated(curves), max_epochs_total=budget,
                   progress=False)
    return min(t.reports[curves.epochs] for t in study.trials if curves.epochs in t.reports)


def test_beats_random_search_at_equal_epochs():
    budget = 8 * 27
    assert _best_after(FreezeThaw(1, 27), budget) < _best_after(None, budget)


def test_recipe_runs_tiny(load_script):
    study = load_script(ROOT / "recipes" / "freeze_thaw_cnn_digits.py").main(max_epochs=3, n_trials=4,
                                                                             searcher="random")
    assert len(study.trials) == 4 and all(t.status.is_final for t in study.trials)
    assert study.best.reports[3] == study.best.value  # the best was trained to max_epochs
