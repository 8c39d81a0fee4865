"""Channels and the field blocks Asterisk puts in AMI events, in Asterisk's field order.

Field names and order follow the real Asterisk 22 transcript in tests/data: a channel
snapshot is Channel .. Linkedid (then `ChanVariable: NAME=value` for each channel variable
named in manager.conf `channelvars`); `Dest`/`LocalOne`/`LocalTwo` prefixes name a second channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Fields = list[tuple[str, str]]

STATE_DESC = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
    8: "Dialing Offhook",
    9: "Pre-ring",
}

UP = 6

# Q.850 causes the sandbox produces, with Asterisk's Cause-txt.
CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
    38: "Network out of order",
}

BRIDGE_FIELDS = ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>")


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = 0
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    conn_num: str = "<unknown>"
    conn_name: str = "<unknown>"
    language: str = "en"
    accountcode: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    created: float = 0.0  # simulated seconds since boot
    application: str = ""
    appdata: str = ""
    bridge_id: str = ""
    alive: bool = True
    in_dialplan: bool = False  # runs a PBX (our dialplan): its hangup runs the context's h extension

    def snapshot(self, channelvars: tuple[str, ...] = (), prefix: str = "") -> Fields:
        out: Fields = [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state)),
            (prefix + "ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (prefix + "CallerIDNum", self.cid_num),
            (prefix + "CallerIDName", self.cid_name),
            (prefix + "ConnectedLineNum", self.conn_num),
            (prefix + "ConnectedLineName", self.conn_name),
            (prefix + "Language", self.language),
            (prefix + "AccountCode", self.accountcode),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]
        for name in channelvars:
            out.append((prefix + "ChanVariable", f"{name}={self.variables.get(name, '')}"))
        return out


@dataclass
class Bridge:
    uniqueid: str
    channels: list[Channel] = field(default_factory=list)

    def fields(self) -> Fields:
        return [
            ("BridgeUniqueid", self.uniqueid),
            *BRIDGE_FIELDS,
            ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(len(self.channels))),
            ("BridgeVideoSourceMode", "none"),
        ]


def parse_callerid(text: str) -> tuple[str, str]:
    """`"Name" <num>` / `Name <num>` / `num` -> (num, name); missing parts are `<unknown>`."""
    text = text.strip()
    if "<" in text and text.endswith(">"):
        name, _, num = text[:-1].rpartition("<")
        name = name.strip().strip('"').strip()
        return (num.strip() or "<unknown>", name or "<unknown>")
    if not text:
        return "<unknown>", "<unknown>"
    return text, "<unknown>"
