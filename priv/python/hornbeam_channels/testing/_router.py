"""Topic patterns, as the server's router matches them (a port of
``native/hornbeam_core/src/router.rs``; ``test_testing_router.py`` checks
the two agree on the README's table and the precedence rules).

A pattern is ``:``-separated segments: a literal, ``*`` or ``{name}``; a
capture matches one non-empty segment. An exact pattern beats any wildcard;
between wildcard patterns the one with a literal at the first segment where
their kinds differ wins; remaining ties go to the pattern given first.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

#: The server's ``max_topic_length`` default: longer topics match nothing.
MAX_TOPIC_LENGTH = 255


class PatternError(ValueError):
    """A pattern the server would refuse at start (the message names it)."""


class Route(NamedTuple):
    pattern: str
    topic_params: Dict[str, str]


class _Pattern(NamedTuple):
    source: str
    segments: Tuple[Optional[str], ...]  # a literal, or None for a capture
    names: Tuple[str, ...]  # one per capture, in order


def _parse(pattern: str) -> _Pattern:
    if not pattern:
        raise PatternError(f"topic pattern {pattern!r} is empty")
    segments: List[Optional[str]] = []
    names: List[str] = []
    prev = "start"  # start | literal | literal_id | other
    prev_literal = ""
    for pos, seg in enumerate(pattern.split(":")):
        if not seg:
            raise PatternError(f"topic pattern {pattern!r} has an empty segment "
                               "(leading, trailing or doubled ':')")
        bad = PatternError(f"topic pattern {pattern!r} has a bad segment {seg!r}: "
                           "a segment is a literal, '*' or '{name}'")
        if seg == "*":
            if prev == "start":
                name, prev = "id", "other"
            elif prev == "literal":
                name, prev = f"{prev_literal}_id", "literal_id"
            elif prev == "literal_id":
                name, prev = "channel_id", "other"
            else:
                name = f"param_{pos}"
        elif seg.startswith("{") and seg.endswith("}") and len(seg) >= 2:
            name = seg[1:-1]
            if not name or any(c in name for c in "{}*"):
                raise bad
            prev = "other"
        elif any(c in seg for c in "{}*"):
            raise bad
        else:
            prev, prev_literal = "literal", seg
            segments.append(seg)
            continue
        if name in names:
            raise PatternError(f"topic pattern {pattern!r} captures {name!r} more than once")
        names.append(name)
        segments.append(None)
    return _Pattern(pattern, tuple(segments), tuple(names))


class Router:
    """Compiled patterns; :meth:`match` answers like the server's router."""

    def __init__(self, patterns: Sequence[str], max_topic_length: int = MAX_TOPIC_LENGTH) -> None:
        self._max = max_topic_length
        self._exact: Dict[str, str] = {}
        self._wild: Dict[int, List[_Pattern]] = {}
        for p in (_parse(s) for s in patterns):
            if not p.names:
                self._exact.setdefault(p.source, p.source)
            else:
                self._wild.setdefault(len(p.segments), []).append(p)
        for group in self._wild.values():
            # stable: ties keep the order given
            group.sort(key=lambda p: [seg is None for seg in p.segments])

    def match(self, topic: str) -> Optional[Route]:
        """The route of ``topic``, or None (the server's "unmatched topic")."""
        if len(topic.encode("utf-8")) > self._max:
            return None
        if topic in self._exact:
            return Route(self._exact[topic], {})
        parts = topic.split(":")
        if any(not part for part in parts):
            return None
        for p in self._wild.get(len(parts), []):
            if all(seg is None or seg == part for seg, part in zip(p.segments, parts)):
                values = [part for seg, part in zip(p.segments, parts) if seg is None]
                return Route(p.source, dict(zip(p.names, values)))
        return None
