// Preloaded into the npm websockify (node --require): its websockify.js
// drops the host of [source_addr:]source_port and listens on every
// interface. The benchmark must stay on loopback, so a listen on a bare port
// is pinned to 127.0.0.1 here rather than by patching the package.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const bare = (typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))) &&
    typeof args[1] !== 'string';
  if (bare) args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};
