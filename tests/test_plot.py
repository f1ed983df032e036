"""torchhpo.plot on real small studies (Agg backend): the files, the scales, the labels, the colours, the models."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import torchhpo as th  # noqa: E402
from torchhpo import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
SPACE = th.Space({"lr": th.Float(1e-4, 1e-1, log=True), "layers": th.Int(1, 4), "act": th.Choice(["relu", "tanh"]),
                  "dummy": th.Float(0.0, 1.0)})


def loss(config):
    """Depends on lr (most), act and layers; ignores dummy."""
    return (math.log10(config["lr"]) + 2.5) ** 2 + 0.1 * config["layers"] + 0.5 * (config["act"] == "tanh")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def min_study():
    study = th.Study(SPACE, mode="min", searcher="random", seed=0)
    return study.optimize(lambda c, t: loss(c), n_trials=30, progress=False)


@pytest.fixture(scope="module")
def pruned_study():
    """mode max, ASHA pruning on reported curves, one trial failing after a report."""
    def train(config, trial):
        for epoch in range(1, 10):
            trial.report(1.0 / (1.0 + loss(config)) * epoch / 9, epoch)
            if config["dummy"] > 0.9:
                raise RuntimeError("diverged")
        return 1.0 / (1.0 + loss(config))

    study = th.Study(SPACE, mode="max", searcher="random", scheduler="asha", max_epochs=9, seed=1)
    study.enqueue({"lr": 1e-3, "layers": 2, "act": "relu", "dummy": 0.95})  # fails
    return study.optimize(train, n_trials=24, progress=False, fail_fast=None)


def told(values, *, mode="min", space=None):
    """A study whose trials got exactly ``values`` (None: failed), through ask and tell."""
    study = th.Study(space or th.Space({"x": th.Float(0.0, 1.0)}), mode=mode, searcher="random", seed=0)
    for v in values:
        trial = study.ask()
        study.tell(trial, v) if v is not None else study.tell(trial, status=th.Status.FAILED, reason="boom")
    return study


def labels(axis):
    return [t.get_text() for t in axis.get_yticklabels()]


def test_save_all_writes_every_plot_that_applies_as_png(pruned_study, tmp_path):
    paths = plot.save_all(pruned_study, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["contour.png", "curves.png", "history.png", "importance.png",
                                             "parallel.png", "slice.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000
    assert not plt.get_fignums()  # each figure closed once written


def test_save_all_skips_what_does_not_apply(tmp_path):
    paths = plot.save_all(told([0.3]), tmp_path)  # one trial, no reports: no curves, no model
    assert [p.name for p in paths] == ["history.png", "parallel.png"]
    with pytest.raises(ValueError, match="completed"):
        plot.save_all(told([None, None]), tmp_path)


def test_zero_completed_trials_is_a_clear_error():
    study = told([None, None])
    for draw in (plot.history, plot.parallel_coordinates, plot.importance,
                 lambda s: plot.posterior_slice(s, "x")):
        with pytest.raises(ValueError, match=r"has 0 .*2 failed"):
            draw(study)
    with pytest.raises(ValueError, match=r"trial\.report"):
        plot.learning_curves(study)


def test_history_is_log_when_values_span_decades_and_clips_an_outlier_otherwise(tmp_path):
    decades = told([1e-3, 0.5, 2.0, 30.0, 1e2])
    assert plot.history(decades, tmp_path / "h.png").axes[0].get_yscale() == "log"
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    values = [-1.0, -0.5, 0.2, -0.8, 0.1, -0.3, 1e6, None]  # one diverged trial, one failed
    ax = plot.history(told(values)).axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[1] < 10  # the rest is not flattened
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"completed", "beyond the axis", "failed (no value)", "best so far"} <= set(legend)
    assert plot.history(told(values), scale="linear").axes[0].get_ylim()[1] > 1e5
    maxed = plot.history(told([-v if v is not None else None for v in values], mode="max")).axes[0]
    assert maxed.get_ylim()[0] > -10  # maximizing: the bad side is the bottom
    with pytest.raises(ValueError, match="positive"):
        plot.history(told(values), scale="log")
    with pytest.raises(ValueError, match="scale="):
        plot.history(told(values), scale="sqrt")


def test_history_best_so_far_line(min_study):
    ax = plot.history(min_study).axes[0]
    best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    y = best.get_ydata()
    assert np.all(np.diff(y[~np.isnan(y)]) <= 0) and y[-1] == min_study.best.value


def test_parallel_coordinates_ticks_carry_real_values_and_the_colour_bar_means_best(min_study, pruned_study):
    for study in (min_study, pruned_study):
        fig = plot.parallel_coordinates(study)
        ax = fig.axes[0]
        lr, layers, act, _ = ax.child_axes  # one axis per parameter, in the space's order
        assert labels(lr) == ["0.0001", "0.001", "0.01", "0.1"]  # decades, evenly spaced: a log axis
        heights = lr.get_yticks()
        assert np.allclose(np.diff(heights), heights[1] - heights[0])
        assert labels(layers) == ["1", "2", "3", "4"] and labels(act) == ["relu", "tanh"]
        assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["lr\n(log)", "layers"]
        lines = ax.collections[0]
        assert lines.colorbar is not None and study.mode in lines.colorbar.ax.get_ylabel()
        top = lines.cmap(lines.norm(study.best.value))
        assert np.allclose(top, plt.get_cmap("viridis")(1.0), atol=0.02)  # the best is yellow in either mode


def test_configs_that_omit_a_parameter_pass_through_its_inactive_tick(tmp_path):
    """Conditional spaces leave inactive parameters out of configs: plots must not need every key."""
    space = th.Space({"layers": th.Int(1, 3), "width2": th.Float(8.0, 64.0)})
    trials = [th.TrialRecord(number=i, config={"layers": 1 + i % 3, **({"width2": 8.0 + 5 * i} if i % 3 else {})},
                             status=th.Status.COMPLETED, value=float(i % 3) + 0.1 * i, sign=-1) for i in range(9)]
    study = SimpleNamespace(space=space, mode="min", name="conditional", trials=trials, searcher=None)
    ax = plot.parallel_coordinates(study).axes[0]
    assert labels(ax.child_axes[1])[0] == "inactive" and "inactive" not in labels(ax.child_axes[0])
    shares = plot.importances(study)
    assert shares["layers"] > shares["width2"] * 0.5  # an importance for each, from incomplete configs
    assert plot.history(study) is not None


def test_learning_curves_legend_per_status_and_log_scale(pruned_study):
    ax = plot.learning_curves(pruned_study, scale="log").axes[0]
    assert ax.get_yscale() == "log"
    present = {t.status.value for t in pruned_study.trials if t.reports}
    assert {"completed", "pruned", "failed"} <= present
    assert {t.get_text() for t in ax.get_legend().get_texts()} == present
    assert ax.get_xlabel() == "step"


def test_importance_ranks_an_influential_parameter_above_a_dummy(min_study):
    shares = plot.importances(min_study)
    assert list(shares) == SPACE.names and all(0 <= s <= 1 for s in shares.values())
    assert shares["lr"] > 3 * shares["dummy"] and shares["act"] > shares["dummy"]
    ax = plot.importance(min_study).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "lr"  # the most important on top
    with pytest.raises(ValueError, match="at least"):
        plot.importances(told([0.1, 0.2]))


def test_posterior_slice_passes_near_the_observed_points():
    space = th.Space({"x": th.Float(-2.0, 2.0)})
    study = th.Study(space, mode="max", searcher="random", seed=3)
    study.optimize(lambda c, t: math.sin(2 * c["x"]) + c["x"], n_trials=8, progress=False)
    fig = plot.posterior_slice(study, "x")
    top, low = fig.axes
    x, mean = top.get_lines()[0].get_data()
    done = [t for t in study.trials if t.status is th.Status.COMPLETED]
    spread = max(t.value for t in done) - min(t.value for t in done)
    for t in done:
        assert abs(np.interp(t.config["x"], x, mean) - t.value) < 0.05 * spread
    assert low.get_ylabel() == "acquisition"


def test_posterior_slice_axes_speak_the_parameters_terms(min_study):
    ax = plot.posterior_slice(min_study, "lr").axes[0]
    assert ax.get_xscale() == "log"
    low = plot.posterior_slice(min_study, "act").axes[1]  # the lower panel carries the shared x-axis's labels
    assert [t.get_text() for t in low.get_xticklabels()] == ["relu", "tanh"]
    fig = plot.posterior_slice(min_study, ("lr", "layers"))
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_ylabel() == "layers" and len(fig.axes) == 2
    with pytest.raises(ValueError, match="one or two names"):
        plot.posterior_slice(min_study, ("lr", "nope"))
