// sockjs-client in Node: connects to URL with only TRANSPORT allowed, sends
// EVENTS messages, waits for EVENTS back, stays LINGER_MS, closes, and prints
// its tally as one JSON line.
// Usage: node sockjs-client.cjs URL TRANSPORT EVENTS LINGER_MS
const SockJS = require('sockjs-client')

const [url, transport, eventsArg, lingerArg] = process.argv.slice(2)
const events = Number(eventsArg)
const linger = Number(lingerArg || 0)
const tally = { received: 0, sent: 0, control: {}, details: {} }

const sock = new SockJS(url, null, { transports: [transport] })
const deadline = setTimeout(() => {
  console.error(`gave up: ${JSON.stringify(tally)}`)
  process.exit(1)
}, 15000)
sock.onopen = () => {
  tally.details.transport = sock.transport
  for (let index = 0; index < events; index++) {
    sock.send(JSON.stringify({ index, text: `from the client ${index}` }))
    tally.sent += 1
  }
}
sock.onmessage = (event) => {
  tally.received += 1
  if (tally.received === events) setTimeout(() => sock.close(), linger)
}
sock.onheartbeat = () => { tally.control['heartbeat received'] = (tally.control['heartbeat received'] || 0) + 1 }
sock.onclose = (event) => {
  clearTimeout(deadline)
  tally.details.close = { code: event.code, reason: event.reason }
  console.log(JSON.stringify(tally))
  process.exit(0)
}
