"""hornbeam_channels.testing's topic router agrees with the server's
(cases from native/hornbeam_core/src/router.rs and the README's table)."""

import pytest

from hornbeam_channels.testing import PatternError
from hornbeam_channels.testing._router import MAX_TOPIC_LENGTH, Route, Router


def names(pattern):
    """Capture names of ``pattern``, read from a topic it matches."""
    topic = ":".join(f"v{i}" if seg == "*" or seg.startswith("{") else seg
                     for i, seg in enumerate(pattern.split(":")))
    return list(Router([pattern]).match(topic).topic_params)


@pytest.mark.parametrize("pattern,topic,params", [
    ("room:*", "room:lobby", {"room_id": "lobby"}),
    ("chat:*:*", "chat:a:b", {"chat_id": "a", "channel_id": "b"}),
    ("a:*:*:*", "a:1:2:3", {"a_id": "1", "channel_id": "2", "param_3": "3"}),
    ("*", "x", {"id": "x"}),
    ("user:{name}", "user:ana", {"name": "ana"}),
    ("room:{name}", "room:café au lait", {"name": "café au lait"}),
])
def test_readme_table_of_patterns_and_params(pattern, topic, params):
    assert Router([pattern]).match(topic) == Route(pattern, params)


@pytest.mark.parametrize("pattern,expected", [
    ("chat:{room}:{user}", ["room", "user"]),
    ("a:b:*", ["b_id"]),
    ("x:{y}:z:*", ["y", "z_id"]),
    ("a:*:*:*:*", ["a_id", "channel_id", "param_3", "param_4"]),
    ("a:*:*:b:*", ["a_id", "channel_id", "b_id"]),
    ("*:lobby", ["id"]),
    ("{x}:*", ["x", "param_1"]),
    ("*:*", ["id", "param_1"]),
    ("room:{r}:*", ["r", "param_2"]),
])
def test_capture_names_follow_the_servers_rules(pattern, expected):
    assert names(pattern) == expected


@pytest.mark.parametrize("topic", ["room:", "room:a:b", "room", "Room:x", "rooms:x"])
def test_wildcard_matches_exactly_one_non_empty_segment(topic):
    assert Router(["room:*"]).match(topic) is None


def test_exact_pattern_beats_wildcards_and_literals_win_at_first_difference():
    r = Router(["*:lobby:*", "room:*:*", "room:*:x", "room:lobby:x"])
    assert r.match("room:lobby:x").pattern == "room:lobby:x"
    assert r.match("room:hall:x").pattern == "room:*:x"
    assert r.match("room:lobby:y").pattern == "room:*:*"
    assert r.match("hall:lobby:y").pattern == "*:lobby:*"


def test_ties_go_to_the_pattern_given_first():
    assert Router(["room:{a}", "room:*"]).match("room:1").pattern == "room:{a}"
    assert Router(["room:*", "room:{a}"]).match("room:1").pattern == "room:*"


def test_topics_longer_than_max_topic_length_match_nothing():
    r = Router(["t:*"])
    assert r.match("t:" + "x" * (MAX_TOPIC_LENGTH - 2)) is not None
    assert r.match("t:" + "x" * (MAX_TOPIC_LENGTH - 1)) is None


@pytest.mark.parametrize("pattern,fragment", [
    ("", "is empty"),
    ("room:", "empty segment"), (":room", "empty segment"), ("a::b", "empty segment"),
    ("room:{", "bad segment"), ("room:{}", "bad segment"), ("room:a{b}", "bad segment"),
    ("room:{a*}", "bad segment"), ("room:a*", "bad segment"), ("room:**", "bad segment"),
    ("{x}:{x}", "captures 'x' more than once"),
    ("room:*:{room_id}", "captures 'room_id' more than once"),
    ("a:*:*:b:*:*", "captures 'channel_id' more than once"),
])
def test_patterns_the_server_refuses_are_refused_with_their_name(pattern, fragment):
    with pytest.raises(PatternError) as e:
        Router([pattern])
    assert fragment in str(e.value) and repr(pattern) in str(e.value)
