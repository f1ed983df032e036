"""Pictures of a study (matplotlib, loaded lazily): optimization history, learning curves, parallel coordinates,
parameter importance and slices of the GP posterior.

Each function takes the ``Study``, draws on ``ax`` (a new figure when ``None``), saves to ``path`` when given, and
returns the figure. They read configs with ``config.get``: a conditional parameter that a config omits is drawn
as inactive, never an error. A study without the trials a plot needs (no completed trial, no reports) gets a
``ValueError`` that says what is missing; ``save_all`` writes only the plots that apply.

    torchhpo plot runs/x.db --out plots/          # history.png, curves.png, parallel.png, importance.png, ...
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from torchhpo.checks import integer
from torchhpo.observations import observations
from torchhpo.space import Choice, Float, Int, Space
from torchhpo.study import Study
from torchhpo.trial import Status, TrialRecord

__all__ = ["history", "importance", "importances", "learning_curves", "parallel_coordinates", "posterior_slice",
           "save_all"]

COLORS = {Status.COMPLETED: "tab:blue", Status.PRUNED: "tab:orange", Status.PAUSED: "tab:purple",
          Status.FAILED: "tab:red", Status.RUNNING: "tab:gray"}
MARKERS = {Status.COMPLETED: "o", Status.PRUNED: "s", Status.PAUSED: "P", Status.FAILED: "x", Status.RUNNING: "d"}
SCALES = ("auto", "linear", "log", "clip")
LOG_DECADES = 2.0  # scale="auto" draws on a log axis when positive values span at least this many decades
FENCE = 3.0  # scale="clip": the worst-side limit is Tukey's far-out fence, this many interquartile ranges out
MIN_QUARTILE_POINTS = 4  # fewer values have no meaningful quartiles: nothing is clipped
PAD = 0.05  # share of the y-range left free above and below the points
INACTIVE = -0.12  # parallel coordinates: the height of the "inactive" tick, below the unit range of every column
MIN_MODEL_TRIALS = 5  # completed trials before importance and posterior slices say more than their prior
FOREST_TREES = 64
BACKGROUND = 256  # configs the forest's predictions are averaged over, per main effect
MARGINAL_POINTS = 32  # values of a parameter its main effect is evaluated at
SLICE_POINTS = 100  # points of a 1-D slice (per axis of a 2-D one: CONTOUR_POINTS)
CONTOUR_POINTS = 40


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'torchhpo[plot]'") from e
    return plt


def _axes(ax: Any, size: tuple[float, float] = (7.0, 4.0)) -> tuple[Any, Any]:
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=size, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _save(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _completed(study: Study, trials: Sequence[TrialRecord], what: str, at_least: int = 1) -> list[TrialRecord]:
    """The completed trials (with a value); a ``ValueError`` that counts the statuses when there are too few."""
    done = [t for t in trials if t.status is Status.COMPLETED and t.value is not None]
    if len(done) < at_least:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(t.status.value for t in trials).items())) or "none"
        raise ValueError(f"{what}: needs at least {at_least} completed trial{'s' * (at_least > 1)}; study "
                         f"'{study.name}' has {len(done)} (trials: {counts}); plot it once more trials have completed")
    return done


def _last_value(t: TrialRecord) -> float | None:
    """The trial's value, else its last report (running, paused and pruned trials), else ``None``."""
    if t.value is not None:
        return t.value
    return t.reports[max(t.reports)] if t.reports else None


def _scale(values: Sequence[float], scale: str, mode: str) -> tuple[str, tuple[float, float] | None]:
    """The y-axis of ``values``: ``("linear" | "log", limits or None)``.

    ``"auto"`` is ``"log"`` for positive values spanning ``LOG_DECADES`` decades, else ``"clip"``. ``"clip"`` cuts
    the worst side only (the top when minimizing) at Tukey's far-out fence, so one diverged trial does not flatten
    the rest, while the best values, however far below the others, stay in view.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} must be one of {list(SCALES)}")
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    positive = len(v) > 0 and v.min() > 0
    if scale == "log" and not positive:
        raise ValueError(f"scale='log' needs positive values, the smallest is {v.min() if len(v) else None}; use "
                         "scale='clip' or 'linear'")
    if scale == "log" or (scale == "auto" and positive and math.log10(v.max() / v.min()) >= LOG_DECADES):
        return "log", None
    if scale == "linear" or len(v) < MIN_QUARTILE_POINTS:
        return "linear", None
    q1, q3 = np.percentile(v, [25, 75])
    lo, hi = float(v.min()), float(v.max())
    if mode == "min":
        hi = min(hi, q3 + FENCE * (q3 - q1))
    else:
        lo = max(lo, q1 - FENCE * (q3 - q1))
    if (lo, hi) == (v.min(), v.max()):
        return "linear", None
    pad = PAD * ((hi - lo) or max(abs(hi), 1.0))
    return "linear", (lo - pad, hi + pad)


def _legend_handles(statuses: Sequence[Status], line: bool) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=COLORS[s], marker=None if line else MARKERS[s], ls="-" if line else "",
                   label=s.value) for s in Status if s in statuses]


def history(study: Study, path: str | Path | None = None, *, ax: Any = None, scale: str = "auto") -> Any:
    """Each trial's value against its number, and the best completed value so far.

    Pruned, paused and running trials sit at their last report (their own markers); failed trials, which have no
    value, are crosses at the worst edge. ``scale``: ``"log"``, ``"linear"``, ``"clip"`` (the y-range stops at a
    robust limit on the worst side; points beyond it are triangles on the edge) or ``"auto"`` (log for positive
    values spanning ``LOG_DECADES`` decades, else clip).
    """
    trials = study.trials
    _completed(study, trials, "history")
    shown = [(t, v) for t in trials if (v := _last_value(t)) is not None]
    kind, limits = _scale([v for _, v in shown], scale, study.mode)
    fig, ax = _axes(ax)
    ax.set_yscale(kind)
    lo, hi = limits or (-math.inf, math.inf)
    clipped = [(t.number, min(max(v, lo), hi), "^" if v > hi else "v", COLORS[t.status]) for t, v in shown
               if not lo <= v <= hi]
    for status in Status:
        points = [(t.number, v) for t, v in shown if t.status is status and lo <= v <= hi]
        if points:
            ax.scatter(*zip(*points, strict=True), s=16, color=COLORS[status], marker=MARKERS[status], alpha=0.8,
                       zorder=3, label=status.value)
    for i, (x, y, marker, color) in enumerate(clipped):
        ax.scatter(x, y, s=40, color=color, marker=marker, zorder=4, clip_on=False,
                   label=None if i else "beyond the axis")
    failed = [t.number for t in trials if t.status is Status.FAILED and _last_value(t) is None]
    if failed:  # no value: at the worst edge, in axes coordinates
        edge = 0.97 if study.mode == "min" else 0.03
        ax.scatter(failed, [edge] * len(failed), s=30, color=COLORS[Status.FAILED], marker=MARKERS[Status.FAILED],
                   transform=ax.get_xaxis_transform(), zorder=4, label="failed (no value)")
    best, top, xs, line = None, -math.inf, [], []
    for t in trials:
        if t.status is Status.COMPLETED and t.score is not None and t.score > top:
            best, top = t, t.score
        xs.append(t.number)
        line.append(best.value if best is not None else math.nan)
    ax.step(xs, line, where="post", color="black", lw=1.2, label="best so far")
    if limits:
        ax.set_ylim(limits)
    ax.set(xlabel="trial", ylabel=f"value ({study.mode}imize){', clipped' if limits else ''}",
           title=f"{study.name}: optimization history")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def learning_curves(study: Study, path: str | Path | None = None, *, ax: Any = None, scale: str = "auto") -> Any:
    """Every trial's reports against their step, coloured by status (a legend entry per status present): where
    pruning cut curves short. ``scale`` as in ``history``; the clipped range cuts lines at the axis."""
    from matplotlib.ticker import MaxNLocator

    trials = [t for t in study.trials if t.reports]
    if not trials:
        raise ValueError(f"learning_curves: no trial of study '{study.name}' reported a value; call "
                         "trial.report(step, value) in the training function to record learning curves")
    kind, limits = _scale([v for t in trials for v in t.reports.values()], scale, study.mode)
    fig, ax = _axes(ax)
    ax.set_yscale(kind)
    for t in trials:
        steps = sorted(t.reports)
        ax.plot(steps, [t.reports[s] for s in steps], color=COLORS[t.status], alpha=0.6, lw=1,
                marker="." if len(steps) == 1 else None)
    if limits:
        ax.set_ylim(limits)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="step", ylabel=f"reported value ({study.mode}imize)", title=f"{study.name}: learning curves")
    ax.legend(handles=_legend_handles([t.status for t in trials], line=True), loc="best", fontsize=8)
    return _save(fig, path)


def _ticks(p: Float | Int | Choice) -> tuple[list[float], list[str]]:
    """A parameter's ticks: their unit-cube heights and their labels (real values; decades on a log scale)."""
    from matplotlib.ticker import LogLocator, MaxNLocator

    if isinstance(p, Choice):
        return [p.to_unit(o) for o in p.options], [str(o) for o in p.options]
    locator = LogLocator(numticks=6) if p.log else MaxNLocator(nbins=5, integer=isinstance(p, Int))
    values = [float(v) for v in locator.tick_values(p.low, p.high) if p.low <= v <= p.high]
    if len(values) < 2:  # a range narrower than the locator's steps: its ends
        values = sorted({float(p.low), float(p.high), *values})
    return [p.to_unit(v) for v in values], [f"{v:.3g}" for v in values]


def _height(p: Float | Int | Choice, config: dict[str, Any], name: str) -> float:
    return p.to_unit(config[name]) if name in config else INACTIVE


def _norm(values: Sequence[float], mode: str) -> Any:
    """The colour scale of ``values``: log for positive values spanning decades, clipped on the worst side."""
    from matplotlib.colors import LogNorm, Normalize

    kind, limits = _scale(values, "auto", mode)
    lo, hi = limits or (min(values), max(values))
    if kind == "log":
        return LogNorm(lo, hi)
    return Normalize(lo, hi if hi > lo else lo + 1.0)


def parallel_coordinates(study: Study, path: str | Path | None = None, *, ax: Any = None,
                         params: Sequence[str] | None = None) -> Any:
    """Completed trials as lines across one vertical axis per parameter, coloured by value (yellow = best).

    Each axis is labelled with the parameter's real values: decades on log parameters, the options of choices.
    A config that omits a parameter (inactive under a condition) passes through that axis's "inactive" tick.
    ``params``: the axes, in order (default: every parameter of the space).
    """
    from matplotlib.collections import LineCollection

    space, trials = study.space, study.trials
    done = _completed(study, trials, "parallel_coordinates")
    names = list(params) if params is not None else space.names
    unknown = [n for n in names if n not in space.params]
    if unknown or not names:
        raise ValueError(f"parallel_coordinates: params={list(names)} must be names of the space, {space.names}")
    fig, ax = _axes(ax, size=(max(6.0, 1.6 * len(names) + 1.5), 4.5))
    done = sorted(done, key=lambda t: t.score if t.score is not None else -math.inf)  # the best drawn last, on top
    H = np.array([[_height(space.params[n], t.config, n) for n in names] for t in done])  # n x k
    xs = np.arange(len(names), dtype=float)
    values = [float(t.value) for t in done if t.value is not None]
    lines = LineCollection([np.column_stack([xs, row]) for row in H], array=values, norm=_norm(values, study.mode),
                           cmap="viridis" if study.mode == "max" else "viridis_r", alpha=0.8, lw=1.2)
    ax.add_collection(lines)
    if len(names) == 1:
        ax.scatter(xs.repeat(len(H)), H[:, 0], c=values, norm=lines.norm, cmap=lines.cmap, zorder=3)
    inactive = bool((H == INACTIVE).any())
    ax.set_xlim((-0.5, 0.5) if len(names) == 1 else (0, len(names) - 1))
    ax.set_ylim(INACTIVE - 0.05 if inactive else -0.03, 1.03)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xticks(xs, [f"{n}\n(log)" if getattr(space.params[n], "log", False) else n for n in names])
    left, right = ax.get_xlim()
    for j, name in enumerate(names):
        at, labels = _ticks(space.params[name])
        if (H[:, j] == INACTIVE).any():
            at, labels = [INACTIVE, *at], ["inactive", *labels]
        axis = ax.secondary_yaxis((j - left) / (right - left))
        axis.set_yticks(at, labels, fontsize=8)
    fig.colorbar(lines, ax=ax, label=f"value ({study.mode}imize; yellow = best)")
    ax.set_title(f"{study.name}: parallel coordinates ({len(done)} completed trials)")
    return _save(fig, path)


def _encode(space: Space, configs: Sequence[dict[str, Any]]) -> np.ndarray:
    """``n x d`` unit-cube columns, ``INACTIVE`` where a config omits a parameter (a tree splits it off)."""
    return np.array([[_height(p, c, n) for n, p in space.params.items()] for c in configs], dtype=float)


def importances(study: Study, *, seed: int = 0) -> dict[str, float]:
    """Each parameter's share of the variance of the score, fANOVA-style: main effects of a random forest.

    A scikit-learn random forest is fitted on ``torchhpo.observations``: completed trials' scores, failed trials
    at the worst score, and once trials were pruned, the scores at the step most trials reached (the trials
    promoted further are a selection of good configs, which hides what sent the others away). Its inputs are the
    unit-cube columns, with an "inactive" value where a config omits a conditional parameter.
    A parameter's main effect is the forest's prediction averaged over ``BACKGROUND`` configs drawn from the
    product of the observed marginals, as a function of that parameter alone; its importance is the variance of
    that function over the parameter's observed values, divided by the variance of the predictions. Unlike
    impurity importances, this does not favour parameters with many distinct values. Interactions are left out,
    so the shares sum to at most about 1.

    Returns:
        name -> share in [0, 1], in the space's order.
    """
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError as e:
        raise ImportError("importances needs scikit-learn: pip install scikit-learn") from e
    space, trials = study.space, study.trials
    _completed(study, trials, "importances")
    pairs = observations(space, trials, min_points=len(trials))  # once pruned: the step most trials reached
    if len(pairs) < MIN_MODEL_TRIALS:
        raise ValueError(f"importances: needs at least {MIN_MODEL_TRIALS} scored trials, study '{study.name}' has "
                         f"{len(pairs)}; plot it once more trials have completed")
    X = _encode(space, [c for c, _ in pairs])
    y = np.array([s for _, s in pairs], dtype=float)
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1).fit(X, y)
    rng = np.random.default_rng(seed)
    B = X[rng.integers(len(X), size=(BACKGROUND, space.dim)), np.arange(space.dim)]  # columns drawn independently
    total = float(forest.predict(B).var())
    out = {}
    for j, name in enumerate(space.names):
        levels = np.quantile(B[:, j], (np.arange(MARGINAL_POINTS) + 0.5) / MARGINAL_POINTS, method="nearest")
        grid = np.repeat(B[None], len(levels), axis=0)  # levels x BACKGROUND x d
        grid[:, :, j] = levels[:, None]
        effect = forest.predict(grid.reshape(-1, space.dim)).reshape(len(levels), -1).mean(axis=1)
        out[name] = float(effect.var() / total) if total > 0 else 0.0
    return out


def importance(study: Study, path: str | Path | None = None, *, ax: Any = None, seed: int = 0) -> Any:
    """The parameters' ``importances`` as horizontal bars, the most important on top."""
    shares = sorted(importances(study, seed=seed).items(), key=lambda kv: kv[1])
    fig, ax = _axes(ax, size=(6.0, 1.0 + 0.4 * len(shares)))
    bars = ax.barh([n for n, _ in shares], [s for _, s in shares], color="tab:blue")
    ax.bar_label(bars, labels=[f"{s:.0%}" for _, s in shares], padding=3, fontsize=8)
    ax.set_xlim(0, max(1e-9, *(s for _, s in shares)) * 1.15)
    ax.set(xlabel="share of the score's variance (main effect, random forest)",
           title=f"{study.name}: parameter importance")
    return _save(fig, path)


def _slice_axis(p: Float | Int | Choice, k: int) -> tuple[list[float], list[Any]]:
    """A parameter's points along a slice: unit-cube heights, and where each is drawn (a choice's index)."""
    values: list[Any] = p.points(k)
    return [p.to_unit(v) for v in values], list(range(len(values))) if isinstance(p, Choice) else values


def _style(ax: Any, which: str, p: Float | Int | Choice, name: str) -> None:
    """A slice's ``which`` axis ("x" or "y") in the parameter's terms: log for log parameters, whole numbers for
    integers, a choice's options."""
    from matplotlib.ticker import MaxNLocator

    if isinstance(p, Choice):
        getattr(ax, f"set_{which}ticks")(range(len(p.options)), [str(o) for o in p.options])
    elif p.log:
        getattr(ax, f"set_{which}scale")("log")
    elif isinstance(p, Int):
        getattr(ax, f"{which}axis").set_major_locator(MaxNLocator(integer=True))
    getattr(ax, f"set_{which}label")(name)


def _observed(p: Float | Int | Choice, name: str, done: Sequence[TrialRecord]) -> tuple[list[Any], list[TrialRecord]]:
    """The coordinates of the trials whose config holds ``name``, and those trials."""
    held = [t for t in done if name in t.config]
    coords = [p.options.index(p.validate(name, t.config[name])) if isinstance(p, Choice) else t.config[name]
              for t in held]
    return coords, held


def posterior_slice(study: Study, params: str | Sequence[str], path: str | Path | None = None, *,
                    ax: Any = None) -> Any:
    """The GP's view of the study along one parameter, or two, the others fixed at the best trial's values.

    The GP is the study's searcher when it is a ``torchhpo.GP`` (its options and acquisition), else a default
    ``GP()``; it is fitted as the searcher fits it (``GP.posterior``: the same training data, model and seed).
    One parameter: the posterior mean with a band of two standard deviations, the completed trials (their other
    parameters differ, so they scatter around the mean), and below, when ``ax`` is ``None``, the acquisition.
    Two parameters: filled contours of the posterior mean (yellow = best) with the trials on top.
    """
    import torch

    from torchhpo.gp import GP

    space, trials = study.space, study.trials
    names = [params] if isinstance(params, str) else list(params)
    if not 1 <= len(names) <= 2 or any(n not in space.params for n in names) or len(set(names)) < len(names):
        raise ValueError(f"posterior_slice: params={params!r} must be one or two names of the space, {space.names}")
    done = _completed(study, trials, "posterior_slice", at_least=2)
    searcher = study.searcher if isinstance(study.searcher, GP) else GP(seed=0)
    best = max(done, key=lambda t: t.score if t.score is not None else -math.inf)
    ps, cols = [space.params[n] for n in names], [space.names.index(n) for n in names]
    axes = [_slice_axis(p, SLICE_POINTS if len(names) == 1 else CONTOUR_POINTS) for p in ps]
    units = np.array(np.meshgrid(*(a[0] for a in axes), indexing="ij")).reshape(len(names), -1).T  # m x k
    X = space.encode([best.config]).repeat(len(units), 1)
    X[:, cols] = torch.as_tensor(units, dtype=X.dtype)
    mean, std, acquisition = (v.detach().cpu().numpy() for v in searcher.posterior(space, trials, X))
    if len(names) == 2:
        return _save(_contour(study, ps, names, axes, mean, done, best, ax), path)
    if ax is None:
        fig, (ax, low) = _pyplot().subplots(2, 1, figsize=(7.0, 5.0), sharex=True, height_ratios=[3, 1],
                                            layout="constrained")
    else:
        fig, low = ax.figure, None
    x = axes[0][1]
    if isinstance(ps[0], Choice):  # options have no order: no line between them
        ax.errorbar(x, mean, yerr=2 * std, fmt="o", capsize=6, color="tab:blue", label="posterior mean ± 2 std")
    else:
        ax.plot(x, mean, color="tab:blue", label="posterior mean")
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.2, label="mean ± 2 std")
    coords, held = _observed(ps[0], names[0], done)
    ax.scatter(coords, [t.value for t in held], s=14, color="black", zorder=3, label="completed trials")
    ax.scatter(*_observed(ps[0], names[0], [best])[0], best.value, s=120, marker="*", color="tab:red", zorder=4,
               label=f"best (#{best.number}): the slice's other values")
    ax.set(ylabel=f"value ({study.mode}imize)", title=f"{study.name}: GP posterior along {names[0]}")
    ax.legend(loc="best", fontsize=8)
    _style(ax, "x", ps[0], names[0])
    if low is not None:
        low.plot(x, acquisition, color="tab:green", **({"marker": "o", "ls": ""} if isinstance(ps[0], Choice) else {}))
        low.set(ylabel="acquisition")
        _style(low, "x", ps[0], names[0])
    return _save(fig, path)


def _contour(study: Study, ps: list[Any], names: list[str], axes: list[Any], mean: np.ndarray,
             done: Sequence[TrialRecord], best: TrialRecord, ax: Any) -> Any:
    """The 2-D ``posterior_slice``: filled contours of the mean over the two parameters, the trials on top."""
    fig, ax = _axes(ax, size=(6.5, 5.0))
    x, y = axes[0][1], axes[1][1]
    Z, cmap = mean.reshape(len(x), len(y)).T, "viridis" if study.mode == "max" else "viridis_r"
    if any(isinstance(p, Choice) for p in ps):  # options have no order: a cell per option, no contours across them
        filled = ax.pcolormesh(x, y, Z, shading="nearest", cmap=cmap)
    else:
        filled = ax.contourf(x, y, Z, levels=20, cmap=cmap)
    fig.colorbar(filled, ax=ax, label=f"posterior mean ({study.mode}imize; yellow = best)")
    both = [t for t in done if names[0] in t.config and names[1] in t.config]
    ax.scatter(_observed(ps[0], names[0], both)[0], _observed(ps[1], names[1], both)[0], s=14, color="white",
               edgecolor="black", label="completed trials")
    ax.scatter(_observed(ps[0], names[0], [best])[0], _observed(ps[1], names[1], [best])[0], s=150, marker="*",
               color="tab:red", label=f"best (#{best.number})")
    _style(ax, "x", ps[0], names[0])
    _style(ax, "y", ps[1], names[1])
    ax.set_title(f"{study.name}: GP posterior mean, other parameters at the best trial's")
    ax.legend(loc="best", fontsize=8)
    return fig


def save_all(study: Study, out_dir: str | Path, *, min_model_trials: int = MIN_MODEL_TRIALS) -> list[Path]:
    """Write every plot that applies to ``study`` into ``out_dir`` as PNG files; return their paths.

    ``history.png`` and ``parallel.png`` once a trial has completed, ``curves.png`` once a trial has reported,
    and from ``min_model_trials`` scored trials on (``torchhpo.observations``: completed ones, or those at one
    rung once trials were pruned): ``importance.png`` (two or more parameters),
    ``slice.png`` along the most important parameter and ``contour.png`` over the two most important.

    Raises:
        ValueError: no plot applies (no trial has completed or reported).
    """
    from functools import partial

    integer("save_all: min_model_trials", min_model_trials, low=2)
    trials = study.trials
    n_done = sum(t.status is Status.COMPLETED and t.value is not None for t in trials)
    jobs: list[tuple[str, Any]] = []
    if n_done:
        jobs += [("history", history), ("parallel", parallel_coordinates)]
    if any(t.reports for t in trials):
        jobs.append(("curves", learning_curves))
    if n_done and len(observations(study.space, trials)) >= min_model_trials:
        shares = importances(study) if study.space.dim > 1 else {study.space.names[0]: 1.0}
        top = sorted(shares, key=lambda n: -shares[n])
        if study.space.dim > 1:
            jobs += [("importance", importance), ("contour", partial(posterior_slice, params=top[:2]))]
        jobs.append(("slice", partial(posterior_slice, params=top[0])))
    if not jobs:
        _completed(study, trials, "save_all")  # its error counts the trials
    plt, out, paths = _pyplot(), Path(out_dir), []
    for name, draw in jobs:
        paths.append(out / f"{name}.png")
        plt.close(draw(study, path=paths[-1]))
    return paths
