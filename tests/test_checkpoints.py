"""trial.save / trial.load: what a checkpoint may hold, exact round trips, and what is refused (at save, not load)."""

import collections
import os
import pickle
import random

import numpy as np
import pytest
import torch

import torchhpo as th
import torchhpo.trial as trial_module

BIT_GENERATORS = [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64]


def _same(a, b, where="state"):
    """Equal values of the same types, all the way down (a numpy array must come back a numpy array, same dtype)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} came back as {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (np.isnan(a) and np.isnan(b))), where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _states():
    arr = np.arange(12).reshape(3, 4)
    dtypes = [np.float64, np.float32, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.bool_, np.complex64, np.complex128]
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    return {
        "arrays": {np.dtype(d).name: (arr % 2).astype(d) if d is np.bool_ else arr.astype(d) for d in dtypes},
        "strided": np.arange(20.0).reshape(4, 5)[::2, ::-2],  # not contiguous: comes back with the same values
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(4, dtype=">i4"),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "zero_d": np.array(7.25),
        "nan": np.array([np.nan, np.inf, -0.0]),
        "scalars": [np.float32(1.5), np.float64(-2.25), np.int64(-3), np.uint64(2**64 - 1), np.bool_(True),
                    np.int8(-128), np.complex128(1 - 2j), np.float16(0.5)],
        "np_legacy_rng": np.random.RandomState(3).get_state(),
        "np_generators": [np.random.Generator(bg(11)).bit_generator.state for bg in BIT_GENERATORS],
        "python_rng": random.Random(5).getstate(),
        "torch_rng": torch.get_rng_state(),
        "torch_generator": torch.Generator().manual_seed(9).get_state(),
        "plain": {"a": 1, "b": [1.5, "x", None, True, 2**100, 1 + 2j, b"raw"], "t": (1, (2, "3")), 4: {"k": None}},
        "model": model.state_dict(),
        "tensors": {"f": torch.randn(3), "i": torch.arange(4), "half": torch.ones(2, dtype=torch.bfloat16)},
    }


def test_numpy_python_and_torch_states_round_trip_exactly(tmp_path):
    state = _states()
    th.Trial(0, {}, checkpoint_dir=tmp_path).save(state)
    back = th.Trial(0, {}, checkpoint_dir=tmp_path).load()
    _same(state, back)
    assert type(back["model"]) is collections.OrderedDict
    assert back["model"]._metadata == state["model"]._metadata  # load_state_dict reads the module versions there
    assert back["arrays"]["float32"].flags.writeable  # a usable array, not a read-only view


def test_restored_generators_draw_the_same_numbers(tmp_path):
    legacy = np.random.RandomState(1)
    gens = [np.random.Generator(bg(2)) for bg in BIT_GENERATORS]
    py, tg = random.Random(3), torch.Generator().manual_seed(4)
    for g in (legacy, *gens):
        g.random(5)  # mid-stream states, e.g. a cached Gaussian or a half-used buffer
    legacy.standard_normal()
    state = {"legacy": legacy.get_state(), "gens": [g.bit_generator.state for g in gens], "py": py.getstate(),
             "torch": tg.get_state()}
    th.Trial(0, {}, checkpoint_dir=tmp_path).save(state)
    back = th.Trial(0, {}, checkpoint_dir=tmp_path).load()

    fresh = np.random.RandomState()
    fresh.set_state(back["legacy"])
    assert np.array_equal(fresh.standard_normal(4), legacy.standard_normal(4))
    for g, s in zip(gens, back["gens"], strict=True):
        other = np.random.Generator(type(g.bit_generator)())
        other.bit_generator.state = s
        assert np.array_equal(other.integers(0, 2**62, 6), g.integers(0, 2**62, 6))
    other_py = random.Random()
    other_py.setstate(back["py"])
    assert [other_py.random() for _ in range(3)] == [py.random() for _ in range(3)]
    other_tg = torch.Generator()
    other_tg.set_state(back["torch"])
    assert torch.equal(torch.rand(3, generator=other_tg), torch.rand(3, generator=tg))


def test_hyperband_resumes_a_trial_that_keeps_numpy_state(tmp_path):
    """The user report: numpy state in the checkpoint made every resume fail, so no trial completed."""
    space = th.Space({"x": th.Float(0.0, 1.0)})

    def train(config, trial):
        state = trial.load() or {"rng": np.random.default_rng(0).bit_generator.state, "losses": np.zeros(0)}
        for epoch in trial.epochs():
            loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
            state = {"rng": state["rng"], "losses": np.append(state["losses"], loss), "epoch": np.int64(epoch)}
            trial.save(state)
            trial.report(loss)
        assert len(state["losses"]) == trial.last_step  # the resumed trial saw its earlier epochs
        return float(state["losses"][-1])

    study = th.Study(space, scheduler="hyperband", max_epochs=9, seed=0, storage=str(tmp_path / "s.db"))
    study.optimize(train, n_trials=12, progress=False)
    assert not [t.reason for t in study.trials if t.status is th.Status.FAILED]
    assert any(t.status is th.Status.COMPLETED and max(t.reports) == 9 for t in study.trials)


class Custom:
    pass


class MyTensor(torch.Tensor):
    pass


@pytest.mark.parametrize("state, where, what", [
    ({"opt": {"x": Custom()}}, r"state\['opt'\]\['x'\]", "test_checkpoints.Custom"),
    ({"f": [1, lambda x: x]}, r"state\['f'\]\[1\]", "function"),
    ({"a": np.array([1, "x"], dtype=object)}, r"state\['a'\]", "dtype object"),
    ({"a": np.array(["x", "y"])}, r"state\['a'\]", "dtype <U1"),
    ({"a": np.datetime64("2024-01-01")}, r"state\['a'\]", "dtype datetime64"),
    ({"a": np.ma.masked_array([1, 2])}, r"state\['a'\]", "MaskedArray"),
    ({"d": collections.defaultdict(int)}, r"state\['d'\]", "defaultdict"),
    ((1, frozenset({2})), r"state\[1\]", "frozenset"),
    ({"r": range(3)}, r"state\['r'\]", "range"),
    ({np.int64(3): 1.0}, r"key np.int64\(3\) of state", "numpy.int64"),
    ({"t": torch.ones(2).as_subclass(MyTensor)}, r"state\['t'\]", "test_checkpoints.MyTensor"),
])
def test_unsafe_values_are_refused_at_save_and_the_last_checkpoint_stays(tmp_path, state, where, what):
    trial = th.Trial(0, {}, checkpoint_dir=tmp_path)
    trial.save({"good": np.ones(2)})
    before = trial.checkpoint_path.read_bytes()
    with pytest.raises(TypeError, match=where) as info:
        trial.save(state)
    assert what in str(info.value) and "numpy arrays" in str(info.value)  # which value, its type, what is allowed
    assert trial.checkpoint_path.read_bytes() == before
    assert os.listdir(tmp_path) == [trial.checkpoint_path.name]  # no half-written file left behind
    _same(trial.load(), {"good": np.ones(2)})


def test_attributes_that_would_not_load_are_refused(tmp_path):
    t = torch.ones(2)
    t.note = Custom()
    with pytest.raises(TypeError, match=r"state\['w'\]\.note is a (tests\.)?test_checkpoints\.Custom"):
        th.Trial(0, {}, checkpoint_dir=tmp_path).save({"w": t})
    cyclic: list = [1]
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match=r"state\[1\] contains itself"):
        th.Trial(0, {}, checkpoint_dir=tmp_path).save(cyclic)
    with pytest.raises(ValueError, match="reserved"):
        th.Trial(0, {}, checkpoint_dir=tmp_path).save({"x": {trial_module.NUMPY_TAG: 1}})
    assert not os.listdir(tmp_path)


def test_shared_values_stay_shared(tmp_path):
    a = np.arange(3)
    inner = {"a": a}
    th.Trial(0, {}, checkpoint_dir=tmp_path).save({"x": inner, "y": inner, "a": a})
    back = th.Trial(0, {}, checkpoint_dir=tmp_path).load()
    assert back["x"] is back["y"] and back["x"]["a"] is back["a"]


def test_a_state_the_loader_would_refuse_is_never_written(tmp_path, monkeypatch):
    """Belt and braces: if torch's safe loader refuses what the checks let through, save fails, keeping the last."""
    trial = th.Trial(0, {}, checkpoint_dir=tmp_path)
    trial.save({"w": torch.zeros(1)})
    before = trial.checkpoint_path.read_bytes()

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("Weights only load failed: unsupported global")

    monkeypatch.setattr(trial_module.torch, "load", refuse)
    with pytest.raises(TypeError, match="would not load back"):
        trial.save({"w": torch.ones(1)})
    monkeypatch.undo()
    assert trial.checkpoint_path.read_bytes() == before and os.listdir(tmp_path) == [trial.checkpoint_path.name]


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_file_at_the_checkpoint_path_is_refused_at_load(tmp_path, writer):
    trial = th.Trial(3, {}, checkpoint_dir=tmp_path / "ck")
    trial.checkpoint_path.parent.mkdir()
    marker = tmp_path / "pwned"
    payload = {"epoch": 0, "state": Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, trial.checkpoint_path)
    else:
        with open(trial.checkpoint_path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(pickle.UnpicklingError, match=r"trial-3\.pt"):
        trial.load()
    with pytest.raises(pickle.UnpicklingError):
        list(th.Trial(3, {}, max_epochs=2, checkpoint_dir=tmp_path / "ck").epochs())
    assert not marker.exists()


def test_checkpoints_from_before_numpy_support_still_load(tmp_path):
    path = tmp_path / "trial-0.pt"
    old = {"w": torch.ones(2), "meta": {trial_module.NUMPY_TAG: 1}}  # an old file is read as written, tag or not
    torch.save({"epoch": 1, "state": old}, path)
    trial = th.Trial(0, {}, max_epochs=4, checkpoint_dir=tmp_path)
    assert list(trial.epochs()) == [2, 3]
    _same(trial.load(), old)


@pytest.mark.parametrize("bad", [
    lambda t: {**t, "dtype": "O"},
    lambda t: {**t, "dtype": "<f8", "shape": [5]},
    lambda t: {**t, "data": torch.zeros(2)},
    lambda t: {**t, "extra": 1},
])
def test_a_damaged_numpy_value_is_a_clear_error(tmp_path, bad):
    trial = th.Trial(0, {}, checkpoint_dir=tmp_path)
    trial.save({"a": [np.arange(2.0)]})
    saved = torch.load(trial.checkpoint_path, weights_only=True)
    saved["state"]["a"][0] = bad(saved["state"]["a"][0])
    torch.save(saved, trial.checkpoint_path)
    with pytest.raises(ValueError, match=r"state\['a'\]\[0\] is not a numpy value as trial.save writes"):
        trial.load()


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    torch.save(torch.ones(2), tmp_path / "trial-0.pt")
    with pytest.raises(ValueError, match="not a trial checkpoint"):
        th.Trial(0, {}, checkpoint_dir=tmp_path).load()
