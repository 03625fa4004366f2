"""Attribute assignment that never silently drops a user's setting.

``distiller.studnet_model = m`` used to create a new attribute nobody read, and ``fit()`` then
said "no student model". An experiment object built on :class:`StrictAttributes` accepts, once
its ``__init__`` is done (``_seal()``), only the attributes it already has (instance attributes
set in ``__init__``, properties and other class attributes), private names (``_...``, so the
object's own bookkeeping keeps working) and a few documented aliases. Anything else raises
:class:`UnknownAttributeError` naming the closest valid attribute.
"""

import difflib

from neural_distill.errors import ConfigError


class UnknownAttributeError(ConfigError, AttributeError):
    """An attribute the experiment does not have was set (a typo, or another API's name)."""


class StrictAttributes:
    # alias -> attribute: names other APIs use for the same setting.
    _attribute_aliases = {}

    def _seal(self):
        object.__setattr__(self, "_attributes_sealed", True)

    def _settable_attributes(self):
        """Public instance attributes, properties and aliases (methods are not settings)."""
        names = {n for n in vars(self) if not n.startswith("_")}
        names.update(n for n in dir(type(self))
                     if not n.startswith("_") and isinstance(getattr(type(self), n), property))
        return sorted(names | set(self._attribute_aliases))

    def __setattr__(self, name, value):
        name = self._attribute_aliases.get(name, name)
        if (name.startswith("_") or not self.__dict__.get("_attributes_sealed")
                or name in self.__dict__ or hasattr(type(self), name)):
            object.__setattr__(self, name, value)
            return
        settable = self._settable_attributes()
        close = difflib.get_close_matches(name, settable, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownAttributeError(
            f"{type(self).__name__} has no attribute '{name}'; setting it would be silently "
            f"ignored.{hint} Settable attributes: {', '.join(settable)}")

    def __getattr__(self, name):
        # Only reached when normal lookup failed: resolve aliases, otherwise a normal error.
        alias = type(self)._attribute_aliases.get(name)
        if alias is not None:
            return getattr(self, alias)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
