// A sockjs server at /sockjs on 127.0.0.1: it counts the messages each session
// sends and, once it has EVENTS of them, writes EVENTS messages in one burst.
// Usage: node sockjs-server.cjs EVENTS HEARTBEAT_MS
// Prints {"port": N} when listening; answers "tally" lines; stops when standard input closes.
const http = require('node:http')
const readline = require('node:readline')
const sockjs = require('sockjs')

const events = Number(process.argv[2])
const heartbeat = Number(process.argv[3] || 25000)
const tally = { received: 0, sent: 0, control: {}, details: { protocols: [] } }
const count = (name) => { tally.control[name] = (tally.control[name] || 0) + 1 }

const service = sockjs.createServer({ heartbeat_delay: heartbeat, log: () => {} })
service.on('connection', (conn) => {
  count('open')
  tally.details.protocols.push(conn.protocol)
  let received = 0
  conn.on('data', (message) => {
    tally.received += 1
    received += 1
    if (received === events) {
      for (let index = 0; index < events; index++) {
        conn.write(JSON.stringify({ index, text: `from the server ${index}` }))
        tally.sent += 1
      }
    }
  })
  conn.on('close', () => count('close'))
})
const server = http.createServer()
service.installHandlers(server, { prefix: '/sockjs' })
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })))

const input = readline.createInterface({ input: process.stdin })
input.on('line', (line) => { if (line.trim() === 'tally') console.log(JSON.stringify(tally)) })
input.on('close', () => {
  server.close()
  setTimeout(() => process.exit(0), 500).unref()
})
