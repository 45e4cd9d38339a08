"""The Channels tutorial's chat consumer (https://channels.readthedocs.io/en/latest/tutorial/),
extended the way most tutorial-based apps are: each message is saved through the ORM's
connection in `database_sync_to_async`, then `group_send` to one room that everyone joined.

Everyone gets every message (no delivery policy, no list coalescing, no acks stored); it speaks
just enough of Parley's protocol for the load generator: `resume` → `resumed`, `send` →
`message.accepted` + `message.created` to the room, everything else ignored but `ping`.
Identity comes from the bench's `bench_id` cookie (customer.<conversation id> | agent.<n>).
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

ROOM = "chat_bench"
SCHEMA = "tutorial_bench"


def prepare_database(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"""CREATE TABLE {SCHEMA}.message (id bigserial PRIMARY KEY, conversation_id bigint NOT NULL,
            direction text NOT NULL, body text NOT NULL, client_msg_id text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())"""
        )


@database_sync_to_async
def save_message(conversation_id: int, direction: str, body: str, client_msg_id: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SCHEMA}.message (conversation_id, direction, body, client_msg_id) VALUES (%s, %s, %s, %s) RETURNING id",
            [conversation_id, direction, body, client_msg_id],
        )
        return int(cursor.fetchone()[0])


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        role, _, ident = self.scope.get("cookies", {}).get("bench_id", "").partition(".")
        self.role, self.ident = role, int(ident or 0)
        await self.channel_layer.group_add(ROOM, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(ROOM, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data: dict[str, Any] = json.loads(text_data or "{}")
        kind = data.get("type")
        if kind == "resume":
            await self.send(text_data=json.dumps({"id": None, "type": "resumed"}))
        elif kind == "ping":
            await self.send(text_data=json.dumps({"id": None, "type": "pong"}))
        elif kind == "send":
            customer = self.role == "customer"
            conversation_id = self.ident if customer else int(data.get("conversation_id") or 0)
            direction = "in" if customer else "out"
            message_id = await save_message(conversation_id, direction, data["body"], data["client_msg_id"])
            await self.send(
                text_data=json.dumps(
                    {
                        "id": None,
                        "type": "message.accepted",
                        "client_msg_id": data["client_msg_id"],
                        "message_id": message_id,
                    }
                )
            )
            message = {
                "id": message_id,
                "conversation_id": conversation_id,
                "direction": direction,
                "body": data["body"],
                "client_msg_id": data["client_msg_id"],
            }
            await self.channel_layer.group_send(
                ROOM,
                {
                    "type": "chat.message",
                    "text": json.dumps({"id": None, "type": "message.created", "message": message}),
                },
            )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])
