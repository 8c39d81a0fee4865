"""Fuzzing beyond random bytes: truncated messages (cut anywhere, even inside a UTF-8 character) before
well-formed ones, in the pure parser and through the real AMI client over TCP. Neither may crash, and every
well-formed event that follows the damage arrives intact."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.ami.client import AMIClient
from dialer.ami.protocol import Message, Parser, encode
from tests.test_ami_protocol import message_st, parse_all
from tests.test_ami_transport import start_peer
from tests.tiers import smoke_and_deep

# messages with non-ASCII values, so a cut often falls inside a multi-byte character
text_st = st.text(alphabet=st.sampled_from("aZ9 -:éü€日😀"), min_size=1, max_size=12)
event_st = st.lists(st.tuples(st.sampled_from(["CallID", "Cause", "Channel", "Value"]), text_st),
                    min_size=1, max_size=4).map(lambda fs: [("Event", "Fuzz"), *fs])


def truncated_messages_never_crash_and_never_swallow_the_next_well_formed_event(damaged, good, sizes):
    # A message cut short ends where the peer's write stopped; the blank line after it is the next frame's.
    cut = []
    for message, where in damaged:
        wire = encode(message)
        cut.append(wire[: max(1, int(len(wire) * where) - 4)])
    stream = b"Asterisk Call Manager/11.0.0\r\n" + b"\r\n\r\n".join(cut) + b"\r\n\r\n"
    stream += b"".join(encode(m) for m in good)
    parsed = [m for m in parse_all(stream, sizes) if isinstance(m, Message)]
    assert [m.fields for m in parsed[-len(good):]] == [list(m) for m in good]


# 50 fixed examples in the default suite, 300 in the deep tier (tests/tiers.py): 7.4 CPU-seconds at 300.
(test_truncated_messages_never_crash_and_never_swallow_the_next_well_formed_event,
 test_truncated_messages_never_crash_and_never_swallow_the_next_well_formed_event_deep) = smoke_and_deep(
    truncated_messages_never_crash_and_never_swallow_the_next_well_formed_event,
    given(damaged=st.lists(st.tuples(event_st, st.floats(0, 1)), min_size=1, max_size=3),
          good=st.lists(message_st, min_size=1, max_size=4), sizes=st.lists(st.integers(1, 40), max_size=40)),
    smoke=50, deep=300, deadline=None)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=300), tail=st.lists(st.integers(1, 30), max_size=10))
def test_a_stream_cut_anywhere_never_crashes(blob, tail):
    parser = Parser()
    data = b"Asterisk Call Manager/11.0.0\r\n" + blob
    for size in tail:
        parser.feed(data[:size])
        data = data[size:]
    parser.feed(data)  # whatever is left stays buffered: no exception, no message invented from nothing


async def _client_survives(garbage: bytes, sizes: list[int]) -> list[str]:
    marker = encode({"Event": "UserEvent", "UserEvent": "DialerOptOut", "CallID": "José-after-garbage"})

    async def script(writer: asyncio.StreamWriter, action: dict[str, str]) -> None:
        data = garbage + b"\r\n\r\n" + marker
        pos = 0
        for size in [*sizes, len(data)]:
            writer.write(data[pos:pos + size])
            await writer.drain()
            pos += size
            await asyncio.sleep(0)
        writer.write(encode({"Response": "Success", "ActionID": action["ActionID"], "Ping": "Pong"}))
        await writer.drain()

    server, port = await start_peer(script)
    async with server, AMIClient("127.0.0.1", port, "dialer", "s3cret", auth="plain", ping_interval=0,
                                 reconnect=False) as ami:
        seen: list[str] = []
        ami.on_event(lambda m: seen.append(m.get("CallID") or ""), names=["UserEvent"])
        response = await ami.action("Ping", timeout=5, check=False)
        assert ami.connected and response.get("Ping") == "Pong"
        return seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.one_of(st.binary(max_size=200),
                         event_st.map(lambda m: encode(m)[:-7])),  # a message cut inside its last field
       sizes=st.lists(st.integers(1, 20), max_size=8))
def test_the_client_over_tcp_survives_garbage_and_truncation_and_keeps_the_next_event(garbage, sizes):
    seen = asyncio.run(_client_survives(garbage, sizes))
    assert seen[-1:] == ["José-after-garbage"]
