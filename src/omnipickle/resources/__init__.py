"""Live resources: the resource rules, the built-in ones, transient attributes and mixins.

* :mod:`.rules`: what each resource type becomes when pickled (:func:`register_resource`).
* :mod:`.builtin`: omnipickle's own rules, one table (installed on import of this package).
* :mod:`.mixins`: :class:`TransientMixin`, :class:`ResourceAwareMixin`, :class:`transient`
  (imported when one of them is first named).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builtin import BUILTIN_RULES, ResourceReopenError
from .rules import (
    ACTIONS,
    USER_RULES,
    ResourceRule,
    has_user_rules,
    is_live_resource,
    refuse,
    register_resource,
    resource_rule,
    rules_generation,
    unregister_resource,
)

if TYPE_CHECKING:
    from .mixins import (
        ResourceAwareMixin,
        ResourceRebuildError,
        TransientMixin,
        reduce_without,
        transient,
        transient_names,
    )

# The mixins are imported when one of their names is first used: pickling needs only the rules
# (the built-in ones are installed by importing .builtin, above).
_MIXINS = frozenset(
    {
        "ResourceAwareMixin",
        "ResourceRebuildError",
        "TransientMixin",
        "reduce_without",
        "transient",
        "transient_names",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _MIXINS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import mixins

    return getattr(mixins, name)


__all__ = [
    "ACTIONS",
    "BUILTIN_RULES",
    "USER_RULES",
    "ResourceAwareMixin",
    "ResourceRebuildError",
    "ResourceReopenError",
    "ResourceRule",
    "TransientMixin",
    "has_user_rules",
    "is_live_resource",
    "reduce_without",
    "refuse",
    "register_resource",
    "resource_rule",
    "rules_generation",
    "transient",
    "transient_names",
    "unregister_resource",
]
