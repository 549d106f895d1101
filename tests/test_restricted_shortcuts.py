"""The checked path's shortcuts count and refuse exactly as the general code they stand for."""

from __future__ import annotations

import decimal
import io
import pickle
from typing import Any

import pytest

from omnipickle.errors import BudgetExceededError
from omnipickle.security import RestrictedUnpickler
from omnipickle.security.budget import Budget, Limits

ARGS: list[tuple[Any, Any]] = [
    ((), None),
    ((1, 2.5, True, None, 3j), None),
    (("text", b"bytes", bytearray(b"ba")), None),
    ((decimal.Decimal("1e20000"),), None),  # a leaf that counts as too big to convert
    ((decimal.Decimal("1.5"), range(10)), None),
    (((1, 2), "x"), None),  # an item with items: walked
    (([1, [2, [3]]],), None),
    (("a" * 1000,) * 50, None),
    ((1,), {"k": "v"}),  # keywords: walked
    ([1, 2], None),  # not a tuple: walked
]


def _budget(limits: Limits) -> Budget:
    budget = Budget(limits, 100)
    budget.charge(7, 11, "before")
    return budget


def _outcome(budget: Budget, charge: Any) -> tuple[Any, ...]:
    try:
        charge()
    except BudgetExceededError as exc:
        return ("refused", str(exc), budget.objects, budget.memory)
    return ("charged", budget.objects, budget.memory)


@pytest.mark.parametrize(
    "limits",
    [
        Limits(),
        Limits(memory=11, memory_per_byte=0),  # full already
        Limits(objects=7, objects_per_byte=0),
        Limits(memory=20_000, memory_per_byte=0, objects=20, objects_per_byte=0),
        Limits(depth=1),
        Limits(memory=None, objects=None, depth=None),
    ],
    ids=repr,
)
@pytest.mark.parametrize(("args", "kwargs"), ARGS, ids=repr)
@pytest.mark.parametrize("sizes", [False, True])
def test_a_call_is_charged_as_walking_its_arguments(
    args: Any, kwargs: Any, sizes: bool, limits: Limits
) -> None:
    quick, walked = _budget(limits), _budget(limits)
    assert _outcome(quick, lambda: quick.call(args, kwargs, "f", sizes=sizes)) == _outcome(
        walked, lambda: walked.walk((args, kwargs), "calling f", sizes=sizes)
    )


def test_handed_out_arguments_are_not_walked_into() -> None:
    args = ("x" * 100, 1)
    quick, walked = _budget(Limits()), _budget(Limits())
    quick.call(args, None, "f", skip={id(args)})
    walked.walk((args, None), "calling f", skip={id(args)})
    assert (quick.objects, quick.memory) == (walked.objects, walked.memory)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_memo_still_knows_where_numpy_objects_are(protocol: int) -> None:
    np = pytest.importorskip("numpy")
    shared = np.arange(3)
    data = pickle.dumps([shared, shared, "s", ("t", 1), 2.5], protocol)
    loaded = RestrictedUnpickler(io.BytesIO(data)).load()
    assert loaded[0] is loaded[1] and loaded[0].tolist() == [0, 1, 2]
    assert loaded[2:] == ["s", ("t", 1), 2.5]
