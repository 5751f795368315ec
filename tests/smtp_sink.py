"""A local SMTP sink for alert delivery tests: aiosmtpd on 127.0.0.1, keeping every message it receives."""

from __future__ import annotations

import email
import email.policy
import html
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    """One delivered message: envelope recipients, subject and plain text of every part."""

    recipients: list[str]
    subject: str
    body: str


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = [html.unescape(p.get_content()) for p in message.walk() if p.get_content_maintype() == "text"]
        self.messages.append(Received(list(envelope.rcpt_tos), str(message["Subject"]), "\n".join(parts)))
        return "250 OK"

    def airflow_connection(self) -> str:
        """The Airflow connection (JSON) of this sink: plain SMTP, no TLS, one attempt."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": self.host,
                "port": self.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10},
            }
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """An SMTP server on 127.0.0.1 for the duration of the block."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", _free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
