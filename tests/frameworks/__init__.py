"""Real servers and real clients of application protocols, for checking what
the report counts against what each side's handlers saw.

Each module pairs one protocol's server with one of its clients, both from the
package registries, on 127.0.0.1. Servers run as context managers that give
their URL and a :class:`Tally` of what their handlers received and sent;
clients connect to whatever URL they are given (the proxy's) and return their
own :class:`Tally`. An application message is what a handler receives or
sends; handshakes, heartbeats, acknowledgements and subscription control are
control, counted separately where the framework reports them.

- :mod:`frameworks.socket_io`: python-socketio (server under uvicorn, asyncio
  client), Engine.IO v4.
- :mod:`frameworks.socket_io_v3`: socket.io 4 with ``allowEIO3`` and
  socket.io-client 2 (Node), Engine.IO v3.
- :mod:`frameworks.graphql_ws`: strawberry-graphql under uvicorn and the ``gql``
  client, over ``graphql-transport-ws`` and ``graphql-ws``.
- :mod:`frameworks.mqtt_ws`: the aedes broker (Node) over WebSocket and paho-mqtt.
- :mod:`frameworks.sockjs_node`: the sockjs server and sockjs-client, both in Node.
- :mod:`frameworks.stomp_ws` and :mod:`frameworks.rabbitmq`: RabbitMQ with its
  Web STOMP plugin, and stomp.py.

The Node scripts are in ``node/`` (``npm ci`` there installs what they use).
"""

from frameworks.common import Tally

__all__ = ["Tally"]
