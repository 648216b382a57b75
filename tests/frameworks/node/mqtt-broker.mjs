// An aedes MQTT broker over WebSocket (path /mqtt) on 127.0.0.1, with a small
// application: each PUBLISH a client sends to up/<rest> is answered with a
// PUBLISH to down/<rest> at the same QoS. Prints {"port": N} when listening;
// answers each "tally" line on standard input with its tally; stops when its
// standard input closes.
import { createServer } from 'node:http'
import { createInterface } from 'node:readline'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'

const tally = { received: 0, sent: 0, control: {}, details: { subprotocols: [] } }
const count = (name) => { tally.control[name] = (tally.control[name] || 0) + 1 }

const aedes = await Aedes.createBroker()
aedes.on('client', () => count('connect received'))
aedes.on('clientDisconnect', () => count('disconnect'))
aedes.on('subscribe', () => count('subscribe received'))
aedes.on('ping', () => count('pingreq received'))
aedes.on('ack', () => count('puback received'))
aedes.on('publish', (packet, client) => {
  if (!client || !packet.topic.startsWith('up/')) return
  tally.received += 1
  count(`publish qos${packet.qos} received`)
  const reply = { cmd: 'publish', topic: 'down/' + packet.topic.slice(3), payload: packet.payload, qos: packet.qos, retain: false }
  aedes.publish(reply, () => {
    tally.sent += 1
    count(`publish qos${packet.qos} sent`)
  })
})

const httpServer = createServer()
const wss = new WebSocketServer({
  server: httpServer,
  path: '/mqtt',
  handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false)
})
wss.on('connection', (socket, request) => {
  tally.details.subprotocols.push(socket.protocol)
  aedes.handle(createWebSocketStream(socket))
})
httpServer.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: httpServer.address().port }))
})

const input = createInterface({ input: process.stdin })
input.on('line', (line) => {
  if (line.trim() === 'tally') console.log(JSON.stringify(tally))
})
input.on('close', () => {
  wss.close()
  httpServer.close()
  aedes.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
})
