// socket.io 4 at /socket.io/ on 127.0.0.1, accepting Engine.IO v3 clients too
// (allowEIO3). It counts the c2s events of each connection and, once it has
// EVENTS of them, emits EVENTS s2c events in one burst.
// Usage: node socketio-server.cjs EVENTS PING_INTERVAL_MS PING_TIMEOUT_MS
// Prints {"port": N} when listening; answers "tally" lines; stops when standard input closes.
const http = require('node:http')
const readline = require('node:readline')
const { Server } = require('socket.io')

const events = Number(process.argv[2])
const tally = { received: 0, sent: 0, control: {}, details: { engineio: [] } }
const count = (name) => { tally.control[name] = (tally.control[name] || 0) + 1 }

const server = http.createServer()
const io = new Server(server, {
  allowEIO3: true,
  pingInterval: Number(process.argv[3] || 25000),
  pingTimeout: Number(process.argv[4] || 20000),
  cors: { origin: '*' }
})
io.on('connection', (socket) => {
  count('connect')
  tally.details.engineio.push(socket.conn.protocol)
  socket.conn.on('packet', (packet) => count(`${packet.type} received`))
  socket.conn.on('packetCreate', (packet) => count(`${packet.type} sent`))
  let received = 0
  socket.on('c2s', () => {
    tally.received += 1
    received += 1
    if (received === events) {
      for (let index = 0; index < events; index++) {
        socket.emit('s2c', { index, text: `from the server ${index}` })
        tally.sent += 1
      }
    }
  })
  socket.on('disconnect', () => count('disconnect'))
})
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })))

const input = readline.createInterface({ input: process.stdin })
input.on('line', (line) => { if (line.trim() === 'tally') console.log(JSON.stringify(tally)) })
input.on('close', () => {
  io.close()
  setTimeout(() => process.exit(0), 500).unref()
})
