// Socket.IO on Node: a peer server of the Hornbeam benchmark (bench/README.md).
// Same application logic as every peer; every event carries (topic, payload, ack):
//   join     -> joins the room, ack {presence: false}
//   ping / new_msg -> ack with the payload
//   publish  -> emits "msg" with the payload to the room, ack {}
// usage: node server.js PORT [HOST]
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = parseInt(process.argv[2] || process.env.PORT || '4000', 10);
const host = process.argv[3] || '127.0.0.1';

const httpServer = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const io = new Server(httpServer, { transports: ['websocket'], serveClient: false, cors: { origin: '*' } });

io.on('connection', (socket) => {
  socket.on('join', (topic, _payload, ack) => {
    socket.join(String(topic));
    if (typeof ack === 'function') ack({ presence: false });
  });
  const echo = (_topic, payload, ack) => { if (typeof ack === 'function') ack(payload); };
  socket.on('ping', echo);
  socket.on('new_msg', echo);
  socket.on('publish', (topic, payload, ack) => {
    io.to(String(topic)).emit('msg', payload);
    if (typeof ack === 'function') ack({});
  });
});

httpServer.listen({ port, host, backlog: 1024 }, () => console.log(`socket.io (node ${process.version}) ready on ${host}:${port}`));
process.on('SIGTERM', () => process.exit(0));
