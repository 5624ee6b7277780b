"""Presence of one node, in memory: what the server's tracker does for a
single node (``native/hornbeam_core/src/presence``), in its shapes.

* ``list``: ``{key: {"metas": [meta, ...]}}``, keys sorted, metas oldest
  first; each meta is ``{"phx_ref": ..., ["phx_ref_prev": ...,] <fields>}``.
* ``track`` of a key the owner already tracks on the topic, ``update`` or
  ``untrack`` of one it does not: an error with the server's message.
* Every change is a diff ``{"joins": {...}, "leaves": {...}}`` (keys
  sorted, metas by ``phx_ref``). The kit sends one ``presence_diff`` per
  change; the server merges a burst within ``presence_diff_interval``.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

Meta = Dict[str, Any]
Presences = Dict[str, Dict[str, List[Meta]]]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_MASK = (1 << 64) - 1


def _ref(counter: int) -> str:
    """An 11-character URL-safe ``phx_ref`` distinct per counter (the
    server's mix over a fixed replica), so refs repeat from run to run."""
    z = (0x6B5F_7E1D_2C4A_9F03 + counter * 0x9E37_79B9_7F4A_7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & _MASK
    z ^= z >> 31
    return "".join(_ALPHABET[(z >> (6 * i)) & 63] for i in range(11))


class PresenceError(Exception):
    """A write the server refuses (already tracked, not tracked)."""


class _Entry(NamedTuple):
    counter: int
    owner: int
    fields: Meta  # without phx_ref / phx_ref_prev
    phx_ref: str
    phx_ref_prev: Optional[str]

    def meta(self) -> Meta:
        out: Meta = {"phx_ref": self.phx_ref}
        if self.phx_ref_prev is not None:
            out["phx_ref_prev"] = self.phx_ref_prev
        out.update(self.fields)
        return out


class Diff(NamedTuple):
    topic: str
    payload: Dict[str, Presences]  # {"joins": ..., "leaves": ...}


class PresenceTable:
    """topic → key → entries. Owners are channel numbers."""

    def __init__(self) -> None:
        self._topics: Dict[str, Dict[str, List[_Entry]]] = {}
        self._counter = 0

    def track(self, owner: int, topic: str, key: str, meta: Meta) -> Diff:
        if self._find(owner, topic, key) is not None:
            raise PresenceError(f"key {key} is already tracked on {topic} by this channel "
                                "(use update to change its meta)")
        entry = self._insert(owner, topic, key, meta, None)
        return _diff(topic, joins=[(key, entry)], leaves=[])

    def update(self, owner: int, topic: str, key: str, meta: Meta) -> Diff:
        old = self._find(owner, topic, key)
        if old is None:
            raise PresenceError(f"key {key} is not tracked on {topic} by this channel")
        self._remove(topic, key, old)
        new = self._insert(owner, topic, key, meta, old.phx_ref)
        return _diff(topic, joins=[(key, new)], leaves=[(key, old)])

    def untrack(self, owner: int, topic: str, key: str) -> Diff:
        old = self._find(owner, topic, key)
        if old is None:
            raise PresenceError(f"key {key} is not tracked on {topic} by this channel")
        self._remove(topic, key, old)
        return _diff(topic, joins=[], leaves=[(key, old)])

    def untrack_owner(self, owner: int) -> List[Diff]:
        """Everything ``owner`` tracked (its channel ended): one diff per topic."""
        diffs = []
        for topic, keys in list(self._topics.items()):
            gone = [(key, e) for key, entries in list(keys.items()) for e in entries if e.owner == owner]
            for key, e in gone:
                self._remove(topic, key, e)
            if gone:
                diffs.append(_diff(topic, joins=[], leaves=gone))
        return diffs

    def list(self, topic: str) -> Presences:
        keys = self._topics.get(topic, {})
        return {key: {"metas": [e.meta() for e in keys[key]]} for key in sorted(keys)}

    def get(self, topic: str, key: str) -> Optional[Dict[str, List[Meta]]]:
        entries = self._topics.get(topic, {}).get(key)
        return {"metas": [e.meta() for e in entries]} if entries else None

    def _find(self, owner: int, topic: str, key: str) -> Optional[_Entry]:
        for e in self._topics.get(topic, {}).get(key, []):
            if e.owner == owner:
                return e
        return None

    def _insert(self, owner: int, topic: str, key: str, meta: Meta, prev: Optional[str]) -> _Entry:
        self._counter += 1
        fields = {k: v for k, v in meta.items() if k not in ("phx_ref", "phx_ref_prev")}
        entry = _Entry(self._counter, owner, fields, _ref(self._counter), prev)
        self._topics.setdefault(topic, {}).setdefault(key, []).append(entry)
        return entry

    def _remove(self, topic: str, key: str, entry: _Entry) -> None:
        keys = self._topics[topic]
        keys[key] = [e for e in keys[key] if e.counter != entry.counter]
        if not keys[key]:
            del keys[key]
        if not keys:
            del self._topics[topic]


def _diff(topic: str, joins: List[Tuple[str, _Entry]], leaves: List[Tuple[str, _Entry]]) -> Diff:
    return Diff(topic, {"joins": _presences(joins), "leaves": _presences(leaves)})


def _presences(entries: List[Tuple[str, _Entry]]) -> Presences:
    by_key: Dict[str, List[_Entry]] = {}
    for key, e in entries:
        by_key.setdefault(key, []).append(e)
    return {key: {"metas": [e.meta() for e in sorted(by_key[key], key=lambda e: e.phx_ref)]}
            for key in sorted(by_key)}
