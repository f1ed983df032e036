import enum
import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchhpo as th

SPACE = th.Space({
    "lr": th.Float(1e-5, 1e-1, log=True),
    "momentum": th.Float(0.0, 0.99),
    "layers": th.Int(1, 4),
    "width": th.Int(8, 512, log=True),
    "batch": th.Int(16, 256, step=16),
    "act": th.Choice(["relu", "tanh", "gelu"]),
    "flag": th.Choice([True, False, None]),
})


def test_sizes_and_columns():
    assert SPACE.dim == 7
    assert SPACE.categorical_dims == [5, 6]
    assert SPACE.discrete_dims == [2, 3, 4]
    assert SPACE.bounds(dtype=torch.float32).shape == (2, 7)
    assert SPACE.levels(2) == pytest.approx([0.125, 0.375, 0.625, 0.875])
    assert SPACE.levels(5) == pytest.approx([1 / 6, 0.5, 5 / 6])
    assert SPACE.levels(0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7))
def test_decode_encode_decode_is_stable(u):
    """Every point of the cube decodes to a valid config that round-trips exactly."""
    config = SPACE.decode(torch.tensor([u], dtype=torch.float64))[0]
    assert SPACE.validate(config) == config
    assert SPACE.decode(SPACE.encode([config]))[0] == config
    X = SPACE.encode([config])
    assert ((X >= 0) & (X <= 1)).all()
    assert torch.equal(SPACE.round(X), X)


@settings(max_examples=200, deadline=None)
@given(lr=st.floats(1e-5, 1e-1), m=st.floats(0.0, 0.99), layers=st.integers(1, 4), width=st.integers(8, 512),
       batch=st.sampled_from(range(16, 257, 16)), act=st.sampled_from(["relu", "tanh", "gelu"]),
       flag=st.sampled_from([True, False, None]))
def test_encode_decode_roundtrip(lr, m, layers, width, batch, act, flag):
    config = {"lr": lr, "momentum": m, "layers": layers, "width": width, "batch": batch, "act": act, "flag": flag}
    back = SPACE.decode(SPACE.encode([config]))[0]
    assert back["lr"] == pytest.approx(lr, rel=1e-12) and back["momentum"] == pytest.approx(m, abs=1e-12)
    assert {k: back[k] for k in ("layers", "width", "batch", "act", "flag")} == {
        "layers": layers, "width": width, "batch": batch, "act": act, "flag": flag}


def test_sampling_is_uniform_over_values_and_log_uniform():
    space = th.Space({"k": th.Int(1, 3), "c": th.Choice("abc"), "lr": th.Float(1e-4, 1.0, log=True)})
    configs = space.sample(6000, seed=0)
    for key, values in (("k", [1, 2, 3]), ("c", ["a", "b", "c"])):
        counts = [sum(c[key] == v for c in configs) for v in values]
        assert max(counts) - min(counts) < 300, counts  # ends are not under-sampled
    decades = [sum(10.0 ** -(d + 1) < c["lr"] <= 10.0 ** -d for c in configs) for d in range(4)]
    assert max(decades) - min(decades) < 300, decades


def test_round_snaps_relaxed_values():
    space = th.Space({"k": th.Int(0, 10), "c": th.Choice([1, 2])})
    X = torch.tensor([[0.52, 0.9]], dtype=torch.float64)
    assert space.decode(space.round(X)) == [{"k": 5, "c": 2}]


def test_sample_and_sobol_are_seeded():
    assert SPACE.sample(5, seed=3) == SPACE.sample(5, seed=3)
    assert SPACE.sample(5, seed=3) != SPACE.sample(5, seed=4)
    assert SPACE.sobol(4, seed=1) == SPACE.sobol(4, seed=1)
    assert SPACE.sobol(8, seed=1)[4:] == SPACE.sobol(4, seed=1, skip=4)


def test_grid_linear_log_and_counts():
    space = th.Space({"layers": th.Int(2, 4), "filters": th.Choice([32, 64, 128])})
    assert len(space.grid()) == 9
    g = th.Space({"lr": th.Float(1e-3, 1e-1, log=True), "m": th.Float(0.0, 1.0)}).grid({"lr": 3, "m": 2})
    assert [c["lr"] for c in g[::2]] == pytest.approx([1e-3, 1e-2, 1e-1])
    assert [c["m"] for c in g[:2]] == [0.0, 1.0]
    assert [c["w"] for c in th.Space({"w": th.Int(1, 1000, log=True)}).grid(4)] == [1, 10, 100, 1000]


def test_persistence_and_equality():
    assert th.Space.from_dict(SPACE.to_dict()) == SPACE
    assert th.Space({"x": th.Float(0, 1)}) != th.Space({"x": th.Float(0, 2)})
    assert "Float(1e-05, 0.1, log=True)" in repr(SPACE)


@pytest.mark.parametrize("make, message", [
    (lambda: th.Float(1.0, 1.0), "Float 'p': low=1.0 must be < high=1.0"),
    (lambda: th.Float(0.0, 1.0, log=True), "Float 'p': low=0.0 must be > 0 when log=True"),
    (lambda: th.Float(0.0, math.nan), "Float 'p': high must be a finite number, got nan"),
    (lambda: th.Float(-math.inf, 0.0), "Float 'p': low must be a finite number, got -inf"),
    (lambda: th.Float("0", 1.0), "Float 'p': low must be a finite number, got '0'"),
    (lambda: th.Int(5, 1), "Int 'p': low=5 must be < high=1"),
    (lambda: th.Int(0, 8, log=True), "must be >= 1 when log=True"),
    (lambda: th.Int(0, 10, step=3), "multiple of step=3"),
    (lambda: th.Int(0, 1.5), "Int 'p': high must be an int, got 1.5"),
    (lambda: th.Int(0, 8, step=0), "Int 'p': step must be a positive int, got 0"),
    (lambda: th.Choice([]), "options are empty"),
    (lambda: th.Choice(["a", "b", "a"]), 'duplicate options "a"'),
])
def test_bad_parameters_name_the_parameter_and_the_fix(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        th.Space({"p": make()})


def test_bad_spaces():
    with pytest.raises(ValueError, match="non-empty dict"):
        th.Space({})
    with pytest.raises(TypeError, match="'x' must be a Float, Int or Choice"):
        th.Space({"x": (0, 1)})


@pytest.mark.parametrize("config, message", [
    ({"x": 0.5, "k": 1, "z": 1}, r"unknown keys \['z'\]"),
    ({"x": 0.5}, r"misses keys \['k'\]"),
    ({"x": 2.0, "k": 1}, r"Float 'x': 2.0 is outside \[0.0, 1.0\]"),
    ({"x": 0.5, "k": 1.5}, r"Int 'k': expected an int, got float 1.5"),
    ({"x": "a", "k": 1}, r"Float 'x': expected a number, got str 'a'"),
])
def test_bad_configs(config, message):
    with pytest.raises((ValueError, TypeError), match=message):
        th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(0, 3)}).validate(config)


def test_grid_needs_points_for_floats():
    with pytest.raises(ValueError, match="Float 'x' needs a number of points"):
        th.Space({"x": th.Float(0.0, 1.0)}).grid()
    with pytest.raises(ValueError, match="must be a positive int"):
        th.Space({"x": th.Float(0.0, 1.0)}).grid(0)


# --- tuples and other options through JSON (SQLite keeps spaces and configs as JSON) ---------------------------------
TUPLES = th.Space({
    "shape": th.Choice([(32, 32), (64, 64), (1, (2, 3))]),
    "mixed": th.Choice([[1, (2, 3)], {"k": (4, 5)}, "plain", (1, True), (1, 1), (1.0, 1)]),
    "x": th.Float(0.0, 1.0),
})


def _via_json(value):
    return json.loads(json.dumps(value))


def test_tuple_choices_survive_a_json_round_trip():
    back = th.Space.from_dict(_via_json(TUPLES.to_dict()))
    assert back == TUPLES
    assert repr(back.params["shape"].options) == repr(TUPLES.params["shape"].options)  # tuples, not lists
    assert repr(back.params["mixed"].options) == repr(TUPLES.params["mixed"].options)
    for config in TUPLES.sample(40, seed=0) + TUPLES.grid({"x": 1}):
        for space in (TUPLES, back):
            got = space.validate(_via_json(config))
            assert repr(got) == repr(config)  # the option itself: (1, True) stays (1, True), (2, 3) a tuple
            assert repr(space.decode(space.encode([_via_json(config)]))[0]) == repr(config)


def test_choice_matches_options_by_type_all_the_way_down():
    c = th.Space({"c": th.Choice([(1, True), (1, 1), (1.0, 1)])})
    for option in c.params["c"].options:
        assert repr(c.validate({"c": option})["c"]) == repr(option)
        assert repr(c.decode(c.encode([{"c": option}]))[0]["c"]) == repr(option)
    with pytest.raises(ValueError, match=r"Choice 'c': expected one of \[\(1, True\), \(1, 1\), \(1.0, 1\)\], "
                                         r"got tuple \(1, 2\)"):
        c.validate({"c": (1, 2)})
    with pytest.raises(ValueError, match=r"got tuple \(1, 2\)"):
        th.Space({"c": th.Choice([[1, 2], 3])}).validate({"c": (1, 2)})  # a tuple is not the list option


def test_spaces_written_before_tuples_were_kept_still_open():
    old = {"shape": {"type": "Choice", "options": [[32, 32], [64, 64]]}}  # what to_dict wrote for tuples before
    new = th.Space({"shape": th.Choice([(32, 32), (64, 64)])})
    assert th.Space.from_dict(old) == new  # so Study(new, storage=old_file) re-opens it
    assert new.validate({"shape": [64, 64]}) == {"shape": (64, 64)}


def test_sqlite_study_gives_back_tuple_choices(tmp_path):
    space = th.Space({"shape": th.Choice([(32, 32), (64, 64), (128, 128)]), "x": th.Float(0.0, 1.0)})
    path = tmp_path / "x.db"
    study = th.Study(space, storage=str(path), seed=0)
    proposed = []
    for _ in range(5):
        trial = study.ask()
        proposed.append(trial.config)
        study.tell(trial, trial.config["x"] + trial.config["shape"][0])
    loaded = th.Study.load(path, searcher="tpe", seed=1)
    assert loaded.space == space and loaded.space.params["shape"].options == ((32, 32), (64, 64), (128, 128))
    assert [loaded.space.validate(t.config) for t in loaded.trials] == proposed
    nxt = loaded.ask()  # TPE encodes the stored configs, then proposes from the space's own options
    assert isinstance(nxt.config["shape"], tuple) and loaded.space.validate(nxt.config) == nxt.config


def test_sqlite_study_best_config_is_the_tuple_option(tmp_path):
    space = th.Space({"shape": th.Choice([(32, 32), (64, 64)])})
    study = th.Study(space, storage=str(tmp_path / "x.db"), seed=0)
    study.tell(study.ask(), 1.0)
    assert isinstance(th.Study.load(tmp_path / "x.db").best.config["shape"], tuple)


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("options, message", [
    ([1.0, math.nan], "option nan is not finite"),
    ([math.inf, 1.0], "option inf is not finite"),
    ([{1: "a"}, "b"], "option {1: 'a'} has the key 1; dict options need str keys"),
    ([{1, 2}, "b"], "option {1, 2} is a set"),
    ([Color.RED, 2], "option <Color.RED: 1> is a test_space.Color"),
    ([np.int64(3), 4], "option np.int64(3) is a numpy.int64"),
    ([object, 4], "option <class 'object'> is a type"),
    ([(1, [2, float("nan")])], "option (1, [2, nan]) holds nan, which is not finite"),
])
def test_choice_options_must_survive_json(options, message):
    with pytest.raises(ValueError) as info:
        th.Space({"p": th.Choice(options)})
    said = str(info.value).replace("tests.test_space", "test_space")  # the module's name depends on the rootdir
    assert f"Choice 'p': {message};" in said and "str, int, float, bool, None" in said  # which option, what is allowed


def test_from_dict_refuses_an_unknown_parameter_type():
    with pytest.raises(ValueError, match="'p': unknown parameter type 'Bogus'; expected Float, Int or Choice"):
        th.Space.from_dict({"p": {"type": "Bogus", "low": 0, "high": 1}})


# --- huge finite ranges --------------------------------------------------------------------------------------------
def test_float_over_the_whole_double_range_samples_both_signs():
    space = th.Space({"x": th.Float(-1e308, 1e308)})
    xs = [c["x"] for c in space.sample(2000, seed=0)]
    assert all(math.isfinite(x) and -1e308 <= x <= 1e308 for x in xs)
    assert 800 < sum(x < 0 for x in xs) < 1200 and len(set(xs)) == 2000
    assert space.encode([{"x": -1e308}, {"x": 0.0}, {"x": 1e308}]).flatten().tolist() == [0.0, 0.5, 1.0]
    U = torch.rand(200, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(space.encode(space.decode(U)), U, rtol=0, atol=1e-15)
    for x in xs[:200]:
        assert space.decode(space.encode([{"x": x}]))[0]["x"] == pytest.approx(x, rel=0, abs=1e293)


def test_float_grid_and_asymmetric_huge_ranges():
    assert [c["x"] for c in th.Space({"x": th.Float(-1e308, 1e308)}).grid(3)] == [-1e308, 0.0, 1e308]
    xs = [c["x"] for c in th.Space({"x": th.Float(-1.5e308, 1e307)}).sample(500, seed=1)]
    assert 0 < sum(x > 0 for x in xs) < 60  # about 1/16 of the range is positive


# --- what a wrong value is told ------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, error, message", [
    ({"lr": "0.1"}, TypeError, "Float 'lr': expected a number, got str '0.1'"),
    ({"lr": True}, TypeError, "Float 'lr': expected a number, got bool True"),
    ({"lr": None}, TypeError, "Float 'lr': expected a number, got NoneType None"),
    ({"layers": 2.5}, TypeError, "Int 'layers': expected an int, got float 2.5"),
    ({"layers": 2.0}, TypeError, "Int 'layers': expected an int, got float 2.0"),
    ({"layers": "2"}, TypeError, "Int 'layers': expected an int, got str '2'"),
    ({"act": "sigmoid"}, ValueError, "Choice 'act': expected one of ['relu', 'tanh'], got str 'sigmoid'"),
    ({"act": 1}, ValueError, "Choice 'act': expected one of ['relu', 'tanh'], got int 1"),
    ({"lr": 0.5}, ValueError, "Float 'lr': 0.5 is outside [0.0001, 0.1]"),
    ({"lr": math.nan}, ValueError, "Float 'lr': nan is outside [0.0001, 0.1]"),
    ({"layers": 9}, ValueError, "Int 'layers': 9 is outside [1, 4]"),
    ({"batch": 20}, ValueError, "Int 'batch': 20 is not on the grid 16, 32, ..., 256 (step=16)"),
])
def test_enqueue_says_what_is_wrong_with_a_value(config, error, message):
    space = th.Space({"lr": th.Float(1e-4, 1e-1, log=True), "layers": th.Int(1, 4), "act": th.Choice(["relu", "tanh"]),
                      "batch": th.Int(16, 256, step=16)})
    good = {"lr": 1e-3, "layers": 2, "act": "relu", "batch": 32}
    with pytest.raises(error, match=re.escape(message)):
        th.Study(space).enqueue({**good, **config})


def test_numpy_numbers_are_plain_numbers_in_valid_configs():
    space = th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(0, 3)})
    got = space.validate({"x": np.float32(0.5), "k": np.int64(2)})
    assert got == {"x": 0.5, "k": 2} and type(got["x"]) is float and type(got["k"]) is int
    assert json.loads(json.dumps(got)) == got


def test_decode_refuses_nan():
    with pytest.raises(ValueError, match=r"decode: X\[0, 1\] is nan"):
        SPACE.decode(torch.tensor([[0.5, math.nan, 0.5, 0.5, 0.5, 0.5, 0.5]], dtype=torch.float64))
