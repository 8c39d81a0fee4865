"""Transport details of the AMI client over a real socket, with a tiny scripted test peer.

The peer is not a stand-in for the sandbox PBX: it exists to control how bytes are cut into
TCP reads (a UTF-8 character split in two, the real Asterisk transcript in odd chunks) and to
speak the old `Response: Follows` command output that Asterisk < 14 sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from dialer.ami.client import AMIClient, NotConnected
from dialer.ami.protocol import encode
from tests.ami_transcript import load_transcript, transcript_wire_bytes

Script = Callable[[asyncio.StreamWriter, dict[str, str]], Awaitable[None]]


async def read_action(reader: asyncio.StreamReader) -> dict[str, str]:
    raw = await reader.readuntil(b"\r\n\r\n")
    return dict(line.split(": ", 1) for line in raw.decode().strip().split("\r\n"))


async def start_peer(on_action: Script):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                action = await read_action(reader)
                if action["Action"] == "Login":
                    ok = action.get("Secret") == "s3cret"
                    writer.write(
                        encode(
                            {
                                "Response": "Success" if ok else "Error",
                                "ActionID": action["ActionID"],
                                "Message": "Authentication accepted" if ok else "Authentication failed",
                            }
                        )
                    )
                    await writer.drain()
                    continue
                if action["Action"] == "Logoff":
                    writer.write(encode({"Response": "Goodbye", "ActionID": action["ActionID"]}))
                    await writer.drain()
                    break
                await on_action(writer, action)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def client(port: int) -> AMIClient:
    return AMIClient("127.0.0.1", port, "dialer", "s3cret", auth="plain", ping_interval=0, reconnect=False)


async def test_utf8_character_split_across_two_reads_is_kept():
    async def script(writer, action):
        data = encode({"Event": "UserEvent", "UserEvent": "DialerConnected", "CallID": "José-1"})
        cut = data.index("é".encode()) + 1  # between the two bytes of é
        writer.write(data[:cut])
        await writer.drain()
        await asyncio.sleep(0.1)  # the client's read returns with half a character
        writer.write(data[cut:])
        writer.write(encode({"Response": "Success", "ActionID": action["ActionID"]}))
        await writer.drain()

    server, port = await start_peer(script)
    async with server, client(port) as ami:
        seen = []
        ami.on_event(lambda m: seen.append(m["CallID"]), names=["UserEvent"])
        await ami.action("Ping")
        assert seen == ["José-1"]


async def test_real_transcript_in_odd_chunks_delivers_every_event():
    _, messages = load_transcript()
    expected = [lines[0].split(": ", 1)[1] for _, lines in messages if lines[0].startswith("Event:")]
    wire = transcript_wire_bytes()
    body = wire[wire.index(b"\r\n") + 2 :]  # the peer already sent a banner

    async def script(writer, action):
        sizes = [1, 7, 4096, 3, 1500, 65536]
        pos = i = 0
        while pos < len(body):
            size = sizes[i % len(sizes)]
            writer.write(body[pos : pos + size])
            await writer.drain()
            pos += size
            i += 1
            if i % 50 == 0:
                await asyncio.sleep(0)
        writer.write(encode({"Response": "Success", "ActionID": action["ActionID"]}))
        await writer.drain()

    server, port = await start_peer(script)
    async with server, client(port) as ami:
        seen = []
        ami.on_event(lambda m: seen.append(m.name))
        await ami.action("Ping", timeout=10)
    assert seen == expected


async def test_old_style_follows_command_output():
    async def script(writer, action):
        writer.write(
            f"Response: Follows\r\nPrivilege: Command\r\nActionID: {action['ActionID']}\r\n"
            "Channel              Location             State   Application(Data)\r\n"
            "0 active channels\r\n--END COMMAND--\r\n\r\n".encode()
        )
        await writer.drain()

    server, port = await start_peer(script)
    async with server, client(port) as ami:
        lines = await ami.command("core show channels")
    assert lines[1] == "0 active channels"
    assert lines[0].startswith("Channel ")


async def test_a_peer_that_never_sends_the_banner_is_a_clear_error():
    async def silent(reader, writer):
        await reader.read()  # accept and say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ami = AMIClient("127.0.0.1", port, "dialer", "s3cret", connect_timeout=0.3, ping_interval=0)
        with pytest.raises(NotConnected, match="no AMI banner"):
            await ami.connect()
        await ami.close()


@pytest.mark.parametrize("follows", [False, True])
async def test_an_oversized_reply_is_reported_in_one_line_and_the_next_replies_still_arrive(follows, caplog):
    """Issue 16 point 10: a reply past MAX_MESSAGE_BYTES fails its own action at once, is logged once, and the
    replies behind it (even ones looking like AMI lines inside its text) are not lost or misread."""
    from dialer.ami.client import OversizedReply
    from dialer.ami.protocol import MAX_MESSAGE_BYTES

    async def on_action(writer: asyncio.StreamWriter, action: dict[str, str]) -> None:
        if action["Action"] == "Big":
            line = b"Response: Success\r\nActionID: fake\r\n"  # inside the big reply: must not be read as one
            if follows:
                head = f"Response: Follows\r\nPrivilege: Command\r\nActionID: {action['ActionID']}\r\n".encode()
                body = (b"x" * 70 + b"\r\n") * (MAX_MESSAGE_BYTES // 70 + 1000) + line + b"--END COMMAND--\r\n\r\n"
            else:
                head = f"Response: Success\r\nActionID: {action['ActionID']}\r\n".encode()
                body = (b"Output: " + b"x" * 70 + b"\r\n") * (MAX_MESSAGE_BYTES // 78 + 1000) + b"\r\n"
            writer.write(head + body)
        else:
            writer.write(encode({"Response": "Success", "ActionID": action["ActionID"], "Ping": "Pong"}))
        await writer.drain()

    server, port = await start_peer(on_action)
    ami = client(port)
    try:
        await ami.connect()
        with caplog.at_level("ERROR", logger="dialer.ami.client"):
            big = asyncio.create_task(ami.action("Big", timeout=30))
            pings = [asyncio.create_task(ami.action("Ping", timeout=30)) for _ in range(3)]
            with pytest.raises(OversizedReply):
                await big
            answers = await asyncio.gather(*pings)
        assert [a.get("Ping") for a in answers] == ["Pong"] * 3
        lines = [r for r in caplog.records if "longer than" in r.getMessage()]
        assert len(lines) == 1 and "Big" in lines[0].getMessage()
    finally:
        await ami.close()
        server.close()
        await server.wait_closed()
