"""Read-only views of the JSON records the CLI prints, with attribute access."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Record(Mapping[str, Any]):
    """A frozen view of one JSON object that ``quantlab … --json`` prints.

    Fields read as attributes or keys (``run.run_id`` or ``run["run_id"]``); nested
    objects are Records and lists are tuples, so nothing in it can be changed.
    :meth:`as_dict` gives back the plain JSON data (a copy).
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return _view(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return _view(self._data[name])
        except KeyError:
            raise AttributeError(f"record has no field {name!r} "
                                 f"(fields: {', '.join(self._data)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("records are read-only")

    def __dir__(self) -> list[str]:
        return sorted({*self._data, "as_dict"})

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self._data[k]!r}" for k in list(self._data)[:4]
                          if not isinstance(self._data[k], (dict, list)))
        return f"Record({shown}{', …' if len(self._data) > 4 else ''})"

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON data (what ``--json`` prints)."""
        import copy

        return copy.deepcopy(self._data)


def _view(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Record(value)
    if isinstance(value, list):
        return tuple(_view(v) for v in value)
    return value
