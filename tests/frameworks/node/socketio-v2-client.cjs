// socket.io-client 2 (Engine.IO v3) in Node: connects to URL with TRANSPORTS
// (comma-separated: polling, websocket), emits EVENTS c2s events, waits for
// EVENTS s2c events, stays LINGER_MS, disconnects, and prints its tally as one JSON line.
// Usage: node socketio-v2-client.cjs URL TRANSPORTS EVENTS LINGER_MS
const io = require('socket.io-client-v2')

const [url, transportsArg, eventsArg, lingerArg] = process.argv.slice(2)
const events = Number(eventsArg)
const linger = Number(lingerArg || 0)
const tally = { received: 0, sent: 0, control: {}, details: {} }
const count = (name) => { tally.control[name] = (tally.control[name] || 0) + 1 }

const socket = io(url, { transports: transportsArg.split(','), reconnection: false, forceNew: true })
const deadline = setTimeout(() => {
  console.error(`gave up: ${JSON.stringify(tally)}`)
  process.exit(1)
}, 15000)
const engine = socket.io.engine
engine.on('packet', (packet) => count(`${packet.type} received`))
engine.on('packetCreate', (packet) => count(`${packet.type} sent`))
engine.on('upgrade', (transport) => { tally.details.upgraded = transport.name })
socket.on('connect', () => {
  tally.details.first_transport = engine.transport.name
  for (let index = 0; index < events; index++) {
    socket.emit('c2s', { index, text: `from the client ${index}` })
    tally.sent += 1
  }
})
socket.on('s2c', () => {
  tally.received += 1
  if (tally.received === events) {
    setTimeout(() => {
      tally.details.transport = engine.transport.name
      socket.close()
      clearTimeout(deadline)
      console.log(JSON.stringify(tally))
      setTimeout(() => process.exit(0), 100)
    }, linger)
  }
})
socket.on('connect_error', (error) => {
  console.error(`connect_error: ${error}`)
  process.exit(1)
})
