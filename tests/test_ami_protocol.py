"""The pure AMI parser and encoder, on a real Asterisk 22 transcript and on hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.ami.protocol import Banner, Message, Parser, ProtocolError, encode, encode_action, md5_key, variables
from tests.ami_transcript import load_transcript, transcript_wire_bytes
from tests.tiers import smoke_and_deep


def parse_all(data: bytes, chunks: list[int] | None = None) -> list:
    parser = Parser()
    out = []
    if chunks is None:
        return parser.feed(data)
    pos = 0
    for size in chunks:
        out += parser.feed(data[pos : pos + size])
        pos += size
    out += parser.feed(data[pos:])
    return out


def test_real_transcript_parses_every_message():
    _banner, messages = load_transcript()
    parsed = parse_all(transcript_wire_bytes())
    assert parsed[0] == Banner("Asterisk Call Manager/11.0.0")
    assert parsed[0].version == "11.0.0"
    assert len(parsed) - 1 == len(messages)
    for item, (_, lines) in zip(parsed[1:], messages, strict=True):
        assert isinstance(item, Message)
        assert [f"{k}: {v}" for k, v in item.fields] == lines


def test_transcript_byte_by_byte_equals_whole():
    data = transcript_wire_bytes()[:20000]
    whole = parse_all(data)
    one_by_one = parse_all(data, [1] * len(data))
    assert [getattr(m, "fields", m) for m in whole] == [getattr(m, "fields", m) for m in one_by_one]


def test_originate_responses_of_the_transcript():
    parsed = [m for m in parse_all(transcript_wire_bytes()) if isinstance(m, Message)]
    responses = {m["ActionID"]: m for m in parsed if m.is_event and m.name == "OriginateResponse"}
    assert responses["orig-busy"]["Reason"] == "5"
    assert responses["orig-busy"]["Response"] == "Failure"
    assert responses["orig-congestion"]["Reason"] == "8"
    assert responses["orig-noanswer"]["Reason"] == "3"
    assert responses["orig-answer20"]["Response"] == "Success"
    assert responses["orig-answer20"]["Reason"] == "4"


def test_utf8_split_across_reads_is_kept():
    data = "Response: Success\r\nActionID: 1\r\nMessage: José\r\n\r\n".encode()
    cut = data.index("é".encode()) + 1  # in the middle of the two-byte character
    parsed = parse_all(b"Asterisk Call Manager/5.0\r\n" + data, [27 + cut])
    assert parsed[1]["Message"] == "José"


def test_repeated_keys_are_kept_in_order():
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: Hangup\r\nChanVariable: DIALER_CALL_ID=a1\r\nChanVariable: DIALER_CAMPAIGN_ID=c9\r\n"
        b"ChanVariable(X): y\r\n\r\n"
    )
    msg = parse_all(data)[1]
    assert msg.getall("ChanVariable") == ["DIALER_CALL_ID=a1", "DIALER_CAMPAIGN_ID=c9"]
    assert msg.variables() == {"DIALER_CALL_ID": "a1", "DIALER_CAMPAIGN_ID": "c9", "X": "y"}


def test_command_output_new_and_old_style():
    new = b"Response: Success\r\nActionID: 7\r\nOutput: Name: a\r\nOutput: Name: b\r\n\r\n"
    old = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 8\r\n"
        b"Channel: x\r\n\r\nsecond: part\r\n--END COMMAND--\r\n\r\n"
        b"Event: Ping\r\n\r\n"
    )
    parsed = Parser(expect_banner=False).feed(new + old)
    assert parsed[0].output == ["Name: a", "Name: b"]
    assert parsed[1].name == "Follows" and parsed[1].action_id == "8"
    assert parsed[1].output == ["Channel: x", "", "second: part"]
    assert parsed[2].name == "Ping"


def test_old_style_output_waits_for_end_marker():
    parser = Parser(expect_banner=False)
    assert parser.feed(b"Response: Follows\r\nActionID: 8\r\nline\r\n\r\n") == []
    (msg,) = parser.feed(b"--END COMMAND--\r\n\r\n")
    assert msg.output == ["line", ""]


def test_garbage_before_a_message_is_skipped():
    parser = Parser(expect_banner=False)
    parsed = parser.feed(b"\x00\xffnoise\r\nmore noise\r\nEvent: Hangup\r\nCause: 16\r\n\r\n")
    assert len(parsed) == 1 and parsed[0]["Cause"] == "16"
    assert parser.garbage_bytes > 0


def test_encode_refuses_injection():
    with pytest.raises(ProtocolError):
        encode_action("Originate", "1", {"Variable": "NAME=x\r\nAction: Logoff"})
    with pytest.raises(ProtocolError):
        variables({"A=B": 1})


def test_encode_action_repeated_variables():
    data = encode_action("Originate", "a1", {"Channel": "Local/1@x", "Variable": variables({"A": 1, "B": "z"})})
    assert data == (
        b"Action: Originate\r\nActionID: a1\r\nChannel: Local/1@x\r\nVariable: A=1\r\nVariable: B=z\r\n\r\n"
    )
    (msg,) = Parser(expect_banner=False).feed(data.replace(b"Action:", b"Response:", 1))
    assert msg.getall("Variable") == ["A=1", "B=z"]


def test_md5_key():
    assert md5_key("123", "secret") == "ad4f596c85c6fd9fad1cbd30efb611c2"


message_st = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True),
        st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30),
    ),
    min_size=1,
    max_size=6,
).map(lambda fs: [("Event", "Fuzz" + fs[0][0]), *fs])


def never_crashes_and_keeps_events_after_garbage(garbage, messages, data):
    wire = b"".join(encode(m) for m in messages)
    stream = b"Asterisk Call Manager/11.0.0\r\n" + garbage + b"\r\n\r\n" + wire
    sizes = data.draw(st.lists(st.integers(1, 50), max_size=40))
    parsed = [m for m in parse_all(stream, sizes) if isinstance(m, Message)]
    expected = [[(k, v) for k, v in m] for m in messages]
    # Every well-formed message after the garbage arrives intact, in order, at the end.
    assert [m.fields for m in parsed[-len(expected) :]] == expected


# 50 fixed examples in the default suite, 300 in the deep tier (tests/tiers.py): each was 6-9 CPU-seconds at 300.
test_fuzz_never_crashes_and_keeps_events_after_garbage, test_fuzz_never_crashes_and_keeps_events_after_garbage_deep = (
    smoke_and_deep(never_crashes_and_keeps_events_after_garbage,
                   given(garbage=st.binary(max_size=200), messages=st.lists(message_st, min_size=1, max_size=4),
                         data=st.data()), smoke=50, deep=300, deadline=None))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 64), max_size=50))
def test_fuzz_random_bytes_never_crash(blob, sizes):
    parse_all(blob, sizes)


def test_garbage_that_looks_like_old_command_output_does_not_swallow_events():
    # Found by the fuzzer: a stray "Response: Follows" block with no --END COMMAND-- used to hold
    # back every later message until the buffer limit.
    parser = Parser(expect_banner=False)
    parsed = parser.feed(b"response:follows\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n")
    assert [m.name for m in parsed] == ["follows", "Hangup"]
    assert parsed[1]["Cause"] == "16"


def test_parser_survives_a_long_stream_in_odd_chunks():
    data = transcript_wire_bytes()
    sizes = [7, 1, 4093, 13, 65536, 2] * 40
    assert len(parse_all(data, sizes)) == len(load_transcript()[1]) + 1


def fast_and_slow_paths_agree(messages, separators, lf_only, sizes):
    """The whole stream at once (fast path: one decode and split) and in small pieces (mostly the
    message-by-message path) give the same messages, with CRLF or bare LF framing."""
    parts = []
    for message, extra in zip(messages, separators, strict=False):
        wire = encode(message)
        parts.append((wire.replace(b"\r\n", b"\n") if lf_only else wire) + extra)
    stream = b"".join(parts)
    whole = Parser(expect_banner=False).feed(stream)
    pieces = parse_all(b"Asterisk Call Manager/11.0.0\r\n" + stream, sizes)[1:]
    assert [m.fields for m in whole] == [m.fields for m in pieces] == [list(m) for m in messages]


test_fuzz_fast_and_slow_paths_agree, test_fuzz_fast_and_slow_paths_agree_deep = smoke_and_deep(
    fast_and_slow_paths_agree,
    given(messages=st.lists(message_st, min_size=1, max_size=6),
          separators=st.lists(st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n"]), min_size=6, max_size=6),
          lf_only=st.booleans(), sizes=st.lists(st.integers(1, 80), max_size=30)),
    smoke=50, deep=300, deadline=None)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_long_message_read_in_pieces_is_cut_where_its_terminator_lands(cut):
    """The parser searches only the new bytes of a message still arriving; a terminator split across two reads
    (after 1, 2 or 3 of its 4 bytes) is still found, and so is an old-style output's end."""
    body = b"Event: Long\r\n" + b"".join(b"Line%d: %s\r\n" % (i, b"v" * 60) for i in range(3000))
    wire = body + b"\r\n" + b"Event: Next\r\nA: b\r\n\r\n"
    end = len(body) + 2 - 4 + cut  # cut inside the "\r\n\r\n" of the long message
    parser = Parser(expect_banner=False)
    got = []
    for start in range(0, end, 65536):
        got += parser.feed(wire[start:min(start + 65536, end)])
    assert got == []
    got += parser.feed(wire[end:])
    assert [m.get("Event") for m in got] == ["Long", "Next"] and len(got[0].fields) == 3001
    follows = b"Response: Follows\r\nPrivilege: Command\r\n" + b"out\r\n" * 20000 + b"--END COMMAND--\r\n\r\n"
    parser = Parser(expect_banner=False)
    got = [m for start in range(0, len(follows), 4096) for m in parser.feed(follows[start:start + 4096])]
    assert len(got) == 1 and len(got[0].output) == 20000
