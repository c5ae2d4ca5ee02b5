"""The two ways normalisation fails, and the marker of a value a type guard refused."""
from __future__ import annotations


class MappingError(ValueError):
    """A mapping file that cannot be compiled; the message starts with file:line."""


class NormaliseError(ValueError):
    """A record that cannot become an ECS document; the message is the dead-letter reason."""


# A value a guard refused: the rule's field is left out and named in kubehunt.normalise.dropped.
DROPPED = object()
