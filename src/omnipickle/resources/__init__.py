"""Live resources: the resource rules, the built-in ones, transient attributes and mixins.

* :mod:`.rules`: what each resource type becomes when pickled (:func:`register_resource`).
* :mod:`.builtin`: omnipickle's own rules, one table (installed on import of this package).
* :mod:`.mixins`: :class:`TransientMixin`, :class:`ResourceAwareMixin`, :class:`transient`.
"""

from __future__ import annotations

from .builtin import BUILTIN_RULES, ResourceReopenError
from .mixins import (
    ResourceAwareMixin,
    ResourceRebuildError,
    TransientMixin,
    reduce_without,
    transient,
    transient_names,
)
from .rules import (
    ACTIONS,
    ResourceRule,
    has_user_rules,
    is_live_resource,
    refuse,
    register_resource,
    resource_rule,
    rules_generation,
    unregister_resource,
)

# The old private name, until backends/auto.py imports ``refuse``.

__all__ = [
    "ACTIONS",
    "BUILTIN_RULES",
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
