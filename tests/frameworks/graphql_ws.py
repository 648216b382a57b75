"""GraphQL over WebSocket: strawberry-graphql's ASGI app under uvicorn (it
serves both ``graphql-transport-ws`` and ``graphql-ws``) and the ``gql``
client's WebSocket transport, which speaks either.

The application messages are the results: each item a subscription yields and
each query's result travels as one ``next`` (``graphql-transport-ws``) or
``data`` (``graphql-ws``) message. Everything else (connection_init and its
ack, ping/pong and ``ka``, subscribe/start, complete/stop, terminate) is
control, and the requests that start operations are counted as control too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

import strawberry
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from servers import DEADLINE, AsgiServer
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from frameworks.common import Tally

SUBPROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)


@dataclass
class GraphQLServer:
    url: str
    tally: Tally

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/graphql"


@contextlib.contextmanager
def graphql_server(*, keep_alive_interval: float | None = None) -> Iterator[GraphQLServer]:
    """strawberry-graphql at ``/graphql`` with ``query { hello }`` and
    ``subscription { count(n: N) }`` (yields 0..N-1). ``keep_alive_interval``
    turns on strawberry's keep-alive (``ka`` messages over ``graphql-ws``)."""
    tally = Tally()

    @strawberry.type
    class Query:
        @strawberry.field
        def hello(self) -> str:
            tally.control["query"] += 1
            tally.sent += 1
            return "hello, wire"

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def count(self, n: int) -> AsyncGenerator[int, None]:
            tally.control["subscription"] += 1
            for index in range(n):
                tally.sent += 1
                yield index
            tally.control["subscription completed"] += 1

    schema = strawberry.Schema(query=Query, subscription=Subscription)
    app = GraphQL(
        schema,
        subscription_protocols=SUBPROTOCOLS,
        keep_alive=keep_alive_interval is not None,
        keep_alive_interval=keep_alive_interval or 1,
    )
    with AsgiServer(app) as server:
        yield GraphQLServer(server.url, tally)


def run_graphql_client(
    url: str,
    *,
    subprotocol: str,
    items: int,
    subscriptions: int = 1,
    queries: int = 1,
    ping_interval: float | None = None,
    linger: float = 0.0,
) -> Tally:
    """gql's WebsocketsTransport on ``url`` (``ws://…/graphql``) with ``subprotocol``:
    ``subscriptions`` subscriptions of ``items`` items each, then ``queries`` queries,
    then ``linger`` seconds idle (for keep-alives) before closing.

    ``ping_interval`` makes the client ping over ``graphql-transport-ws``. The
    tally's ``control`` counts every message the transport sent and received by
    its ``type`` (``"connection_ack received"``, ``"next received"``, ...).
    """
    return asyncio.run(
        asyncio.wait_for(
            _client(url, subprotocol, items, subscriptions, queries, ping_interval, linger),
            DEADLINE,
        )
    )


async def _client(
    url: str,
    subprotocol: str,
    items: int,
    subscriptions: int,
    queries: int,
    ping_interval: float | None,
    linger: float,
) -> Tally:
    tally = Tally()
    transport = WebsocketsTransport(url=url, subprotocols=[subprotocol], ping_interval=ping_interval)
    _count_messages(transport, tally)
    subscription = gql("subscription Count($n: Int!) { count(n: $n) }")
    query = gql("query { hello }")
    results: list[Any] = []
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        for _ in range(subscriptions):
            async for result in session.subscribe(subscription, variable_values={"n": items}):
                results.append(result["count"])
                tally.received += 1
        for _ in range(queries):
            result = await session.execute(query)
            assert result == {"hello": "hello, wire"}, result
            tally.received += 1
        await asyncio.sleep(linger)
    tally.details["results"] = results
    tally.details["subprotocol"] = transport.subprotocol
    return tally


def _count_messages(transport: WebsocketsTransport, tally: Tally) -> None:
    """Count what the transport sends and receives by message type."""
    send, receive = transport._send, transport._receive

    async def counted_send(message: str) -> None:
        tally.control[f"{json.loads(message).get('type')} sent"] += 1
        await send(message)

    async def counted_receive() -> str:
        message = await receive()
        tally.control[f"{json.loads(message).get('type')} received"] += 1
        return message

    transport._send = counted_send  # type: ignore[method-assign]
    transport._receive = counted_receive  # type: ignore[method-assign]
