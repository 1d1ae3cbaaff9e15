/**
 * websock.js: a WebSocket wrapper for talking to a TCP service through
 * websockify. It negotiates the "binary" or "base64" subprotocol, turns every
 * received frame into bytes on a receive queue, and offers big-endian readers
 * on that queue so protocol code (VNC, telnet, ...) can parse a byte stream
 * instead of messages.
 *
 * Usage:
 *   import { Websock } from './websock.js';
 *   const sock = new Websock();
 *   sock.on('message', () => { if (sock.rQwait('header', 4)) return; ... });
 *   sock.open('ws://host:6080/websockify');
 *
 * @module websock
 */

/** Subprotocols offered when open() is given none, in order of preference. */
export const DEFAULT_PROTOCOLS = ['binary', 'base64'];

/**
 * Websock is a WebSocket with a byte receive queue. Its events ('open',
 * 'message', 'close', 'error') are registered with on(); 'message' only says
 * that new bytes were queued, the bytes are read with the rQ* methods.
 */
export class Websock {
  constructor() {
    /** @type {WebSocket|null} */
    this.ws = null;
    /** 'binary' or 'base64', known once the connection is open. */
    this.mode = 'binary';
    this._rQ = new Uint8Array(4096);
    this._rQstart = 0; // first unread byte
    this._rQend = 0; // one past the last queued byte
    this._handlers = { open: () => {}, message: () => {}, close: () => {}, error: () => {} };
  }

  /**
   * Sets the handler of one event, replacing the previous one.
   * @param {'open'|'message'|'close'|'error'} evt
   * @param {function(Event=):void} handler
   */
  on(evt, handler) {
    if (!(evt in this._handlers)) throw new Error(`Websock: unknown event ${evt}`);
    this._handlers[evt] = handler;
  }

  /**
   * Connects to uri; the mode follows the subprotocol the server picked.
   * @param {string} uri ws:// or wss:// URL
   * @param {string[]} [protocols] subprotocols to offer
   */
  open(uri, protocols = DEFAULT_PROTOCOLS) {
    this._rQstart = this._rQend = 0;
    const ws = new WebSocket(uri, protocols);
    ws.binaryType = 'arraybuffer';
    ws.onopen = (e) => {
      this.mode = ws.protocol === 'base64' ? 'base64' : 'binary';
      this._handlers.open(e);
    };
    ws.onmessage = (e) => this._receive(e.data);
    ws.onclose = (e) => this._handlers.close(e);
    ws.onerror = (e) => this._handlers.error(e);
    this.ws = ws;
  }

  /** Closes the connection, if any; the 'close' event follows. */
  close() {
    if (this.ws && this.ws.readyState < WebSocket.CLOSING) this.ws.close();
  }

  // ---- sending ----

  /**
   * Sends bytes, base64-encoded in base64 mode.
   * @param {Uint8Array|number[]} bytes values 0-255
   */
  send(bytes) {
    const u8 = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    if (this.mode === 'base64') {
      this.ws.send(bytesToBase64(u8));
    } else {
      this.ws.send(u8);
    }
  }

  /**
   * Sends the low byte (0-255) of each character of str.
   * @param {string} str
   */
  sendString(str) {
    const u8 = new Uint8Array(str.length);
    for (let i = 0; i < str.length; i++) u8[i] = str.charCodeAt(i) & 0xff;
    this.send(u8);
  }

  // ---- the receive queue ----

  /** @returns {number} how many received bytes are still unread */
  rQlen() {
    return this._rQend - this._rQstart;
  }

  /** @returns {number} the next byte, left on the queue */
  rQpeek8() {
    return this._rQ[this._rQstart];
  }

  /** @returns {number} the next byte */
  rQshift8() {
    return this._rQ[this._rQstart++];
  }

  /** @returns {number} the next 2 bytes as a big-endian unsigned integer */
  rQshift16() {
    return (this.rQshift8() << 8) | this.rQshift8();
  }

  /** @returns {number} the next 4 bytes as a big-endian unsigned integer */
  rQshift32() {
    // >>> 0 keeps values above 2^31 positive.
    return ((this.rQshift16() << 16) | this.rQshift16()) >>> 0;
  }

  /**
   * @param {number} [len] how many bytes (default: all queued)
   * @returns {string} one character per byte (code 0-255)
   */
  rQshiftStr(len = this.rQlen()) {
    const bytes = this.rQshiftBytes(len);
    let s = '';
    // Chunks keep String.fromCharCode under the engine's argument limit.
    for (let i = 0; i < bytes.length; i += 8192) {
      s += String.fromCharCode(...bytes.subarray(i, i + 8192));
    }
    return s;
  }

  /**
   * @param {number} [len] how many bytes (default: all queued)
   * @returns {Uint8Array} a copy of the next len bytes
   */
  rQshiftBytes(len = this.rQlen()) {
    if (len > this.rQlen()) throw new RangeError(`Websock: ${len} bytes wanted, ${this.rQlen()} queued`);
    const out = this._rQ.slice(this._rQstart, this._rQstart + len);
    this._rQstart += len;
    return out;
  }

  /** Drops the next n bytes. @param {number} n */
  rQskipBytes(n) {
    this._rQstart = Math.min(this._rQstart + n, this._rQend);
  }

  /**
   * Tells a message handler to wait for more data.
   * @param {string} msg what is being waited for (for debugging)
   * @param {number} num bytes needed
   * @returns {boolean} true when fewer than num bytes are queued
   */
  rQwait(msg, num) {
    return this.rQlen() < num;
  }

  /** Appends one frame's payload to the queue and notifies. */
  _receive(data) {
    const bytes = typeof data === 'string' ? base64ToBytes(data) : new Uint8Array(data);
    this._append(bytes);
    this._handlers.message();
  }

  /** Appends bytes, compacting or growing the buffer as needed. */
  _append(bytes) {
    const queued = this.rQlen();
    if (this._rQend + bytes.length > this._rQ.length) {
      // Move unread bytes to the front; grow only when that is not enough.
      let size = this._rQ.length;
      while (queued + bytes.length > size) size *= 2;
      if (size === this._rQ.length) {
        this._rQ.copyWithin(0, this._rQstart, this._rQend);
      } else {
        const grown = new Uint8Array(size);
        grown.set(this._rQ.subarray(this._rQstart, this._rQend));
        this._rQ = grown;
      }
      this._rQstart = 0;
      this._rQend = queued;
    }
    this._rQ.set(bytes, this._rQend);
    this._rQend += bytes.length;
  }
}

/** @param {Uint8Array} u8 @returns {string} */
function bytesToBase64(u8) {
  let bin = '';
  for (let i = 0; i < u8.length; i += 8192) {
    bin += String.fromCharCode(...u8.subarray(i, i + 8192));
  }
  return btoa(bin);
}

/** @param {string} b64 @returns {Uint8Array} */
function base64ToBytes(b64) {
  const bin = atob(b64);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}
