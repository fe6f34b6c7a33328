"""Top-level API names that are also module names (``mannequin.synth``, ``mannequin.evaluate``).

Importing a submodule sets the package attribute of the same name to the module, so a function
exported under the module's name would be replaced by the module the first time anything imports
it.  Instead the module itself is made callable: ``mannequin.synth(out, seed=1)`` calls
:func:`mannequin.synth.synth`, and ``mannequin.synth.render_clip`` still reaches the module's other
names, whichever import came first.
"""
from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from typing import Any


class _CallableModule(types.ModuleType):
    """A module that calls ``__wrapped__`` when called."""

    __wrapped__: Callable[..., Any]
    __signature__: inspect.Signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


def make_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name]`` call ``func`` (same signature, as far as inspect shows)."""
    module = sys.modules[module_name]
    module.__class__ = _CallableModule
    assert isinstance(module, _CallableModule)
    module.__wrapped__ = func
    module.__signature__ = inspect.signature(func)
