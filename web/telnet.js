/**
 * telnet.js: the client side of the telnet protocol (RFC 854/855) over a
 * Websock (websock.js), for a telnet server behind websockify.
 *
 * It splits the received byte stream into data and commands, keeping its
 * parser state between frames so that a command cut across two frames still
 * parses. Options are negotiated with the Q method of RFC 1143, which never
 * answers a request that changes nothing and so cannot loop: the server may
 * turn on ECHO and SUPPRESS-GO-AHEAD; we turn on SUPPRESS-GO-AHEAD,
 * TERMINAL-TYPE (RFC 1091) and NAWS (RFC 1073, window size); every other
 * option is refused.
 *
 * Usage:
 *   import { Websock } from './websock.js';
 *   import { Telnet } from './telnet.js';
 *   const sock = new Websock();
 *   const telnet = new Telnet(sock, { onData: (bytes) => ..., cols: 80, rows: 24 });
 *   sock.open('ws://host:6080/websockify');
 *   telnet.sendText('ls\r\n');
 *
 * @module telnet
 */

/** Command bytes (RFC 854). */
export const IAC = 255;
export const DONT = 254;
export const DO = 253;
export const WONT = 252;
export const WILL = 251;
export const SB = 250;
export const SE = 240;

/** Option codes used here. */
export const OPT = Object.freeze({
  ECHO: 1,
  SGA: 3, // SUPPRESS-GO-AHEAD
  TTYPE: 24,
  NAWS: 31,
});

const TTYPE_IS = 0;
const TTYPE_SEND = 1;

/** Subnegotiations longer than this are cut: no option we accept needs more. */
const SB_MAX = 1024;

// Parser states.
const S_DATA = 0;
const S_IAC = 1; // after IAC
const S_OPT = 2; // after IAC WILL/WONT/DO/DONT, the option byte is next
const S_SB = 3; // inside IAC SB ... (collecting)
const S_SB_IAC = 4; // IAC seen inside a subnegotiation

/**
 * Telnet is one telnet session over a Websock. It takes over the Websock's
 * 'message' event; 'open', 'close' and 'error' stay the caller's.
 */
export class Telnet {
  /**
   * @param {import('./websock.js').Websock} sock
   * @param {object} [opts]
   * @param {function(Uint8Array):void} [opts.onData] receives the data bytes
   *   (commands removed, CR NUL turned into CR)
   * @param {string[]} [opts.terminalTypes] answered in turn to TTYPE SEND;
   *   the last one repeats, which tells the server the list is over
   * @param {number} [opts.cols] window width for NAWS
   * @param {number} [opts.rows] window height for NAWS
   * @param {function(string):void} [opts.onDebug] a line per command, for logs
   */
  constructor(sock, opts = {}) {
    this.sock = sock;
    this.onData = opts.onData || (() => {});
    this.onDebug = opts.onDebug || (() => {});
    this.terminalTypes = opts.terminalTypes || ['VT100', 'XTERM'];
    this.cols = opts.cols || 80;
    this.rows = opts.rows || 24;
    // Options we let the server enable on its side, and enable on ours.
    this.acceptRemote = new Set([OPT.ECHO, OPT.SGA]);
    this.acceptLocal = new Set([OPT.SGA, OPT.TTYPE, OPT.NAWS]);
    this.reset();
    sock.on('message', () => this.receive(sock.rQshiftBytes()));
  }

  /** Forgets all protocol state; for a new connection. */
  reset() {
    this._state = S_DATA;
    this._verb = 0;
    this._sb = [];
    this._afterCR = false; // the previous data byte was CR
    this._ttypeIndex = 0;
    // RFC 1143 states per option: 'no', 'yes', 'wantno', 'wantyes'.
    // remote: the server's side (WILL/WONT from it); local: ours (DO/DONT to us).
    this.remote = new Map();
    this.local = new Map();
  }

  /** @returns {boolean} whether the server echoes what we type */
  get serverEchoes() {
    return this.remote.get(OPT.ECHO) === 'yes';
  }

  // ---- receiving ----

  /**
   * Parses received bytes; data goes to onData in as few calls as possible.
   * @param {Uint8Array} bytes
   */
  receive(bytes) {
    const data = [];
    const flush = () => {
      if (data.length) this.onData(Uint8Array.from(data.splice(0)));
    };
    for (const b of bytes) {
      switch (this._state) {
        case S_DATA:
          if (b === IAC) {
            this._state = S_IAC;
          } else {
            // CR NUL is a bare carriage return: drop the NUL (RFC 854).
            if (!(this._afterCR && b === 0)) data.push(b);
            this._afterCR = b === 13;
          }
          break;
        case S_IAC:
          if (b === IAC) {
            data.push(IAC); // an escaped 255 data byte
            this._afterCR = false;
            this._state = S_DATA;
          } else if (b >= WILL && b <= DONT) {
            this._verb = b;
            this._state = S_OPT;
          } else if (b === SB) {
            this._sb = [];
            this._state = S_SB;
          } else {
            // NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, a stray SE: nothing to do
            // for a terminal; DM's urgent data is not carried by websockify.
            this._state = S_DATA;
          }
          break;
        case S_OPT:
          // Data before a negotiation reaches the terminal before its effect.
          flush();
          this._negotiate(this._verb, b);
          this._state = S_DATA;
          break;
        case S_SB:
          if (b === IAC) this._state = S_SB_IAC;
          else if (this._sb.length < SB_MAX) this._sb.push(b);
          break;
        case S_SB_IAC:
          if (b === SE) {
            flush();
            this._subnegotiation(this._sb);
            this._sb = [];
            this._state = S_DATA;
          } else {
            // IAC IAC is a 255 in the parameters; anything else after IAC is
            // a protocol error we tolerate by keeping the byte.
            if (this._sb.length < SB_MAX) this._sb.push(b);
            this._state = S_SB;
          }
          break;
      }
    }
    flush();
  }

  /** Handles IAC verb opt with the RFC 1143 state machine. */
  _negotiate(verb, opt) {
    this.onDebug(`recv ${verbName(verb)} ${opt}`);
    const remote = verb === WILL || verb === WONT;
    const table = remote ? this.remote : this.local;
    const accepted = (remote ? this.acceptRemote : this.acceptLocal).has(opt);
    const state = table.get(opt) || 'no';
    // Our answers: DO/DONT to the server's WILL/WONT, WILL/WONT to its DO/DONT.
    const yes = remote ? DO : WILL;
    const no = remote ? DONT : WONT;
    const enable = verb === WILL || verb === DO;

    if (enable) {
      if (state === 'no') {
        if (accepted) {
          table.set(opt, 'yes');
          this._sendCommand(yes, opt);
          if (!remote) this._enabledLocal(opt);
        } else {
          this._sendCommand(no, opt); // refused; the state stays 'no'
        }
      } else if (state === 'wantyes') {
        table.set(opt, 'yes'); // the answer to our own request
        if (!remote) this._enabledLocal(opt);
      } else if (state === 'wantno') {
        table.set(opt, 'no'); // a peer error (RFC 1143): settle on no
      }
      // 'yes': already on, no answer (answering would loop).
    } else {
      if (state === 'yes') {
        table.set(opt, 'no');
        this._sendCommand(no, opt);
      } else if (state === 'wantyes' || state === 'wantno') {
        table.set(opt, 'no');
      }
      // 'no': already off, no answer.
    }
  }

  /** Runs when one of our options has just been turned on. */
  _enabledLocal(opt) {
    if (opt === OPT.NAWS) this._sendWindowSize();
    if (opt === OPT.TTYPE) this._ttypeIndex = 0;
  }

  /** Handles the parameters of IAC SB ... IAC SE. */
  _subnegotiation(sb) {
    if (sb.length === 0) return;
    const opt = sb[0];
    this.onDebug(`recv SB ${opt} ${sb.slice(1).join(' ')}`);
    if (opt === OPT.TTYPE && sb[1] === TTYPE_SEND && this.local.get(OPT.TTYPE) === 'yes') {
      const types = this.terminalTypes;
      const name = types[Math.min(this._ttypeIndex, types.length - 1)];
      this._ttypeIndex++;
      const bytes = [TTYPE_IS];
      for (let i = 0; i < name.length; i++) bytes.push(name.charCodeAt(i) & 0x7f);
      this._sendSubnegotiation(OPT.TTYPE, bytes);
    }
    // Anything else is for an option we refused or that has no requests.
  }

  // ---- sending ----

  /**
   * Sends text typed by the user. Each character's code must be below 256
   * (encode other text as UTF-8 bytes first, see sendBytes). A CR not
   * followed by LF goes as CR NUL, an LF not after CR as CR LF (RFC 854).
   * @param {string} text
   */
  sendText(text) {
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
    this.sendBytes(bytes);
  }

  /**
   * Sends data bytes with the same CR and LF rules as sendText; 255 is
   * escaped as IAC IAC.
   * @param {Uint8Array|number[]} bytes
   */
  sendBytes(bytes) {
    const out = [];
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 13) {
        out.push(13);
        if (bytes[i + 1] === 10) {
          out.push(10);
          i++;
        } else {
          out.push(0);
        }
      } else if (b === 10) {
        out.push(13, 10);
      } else if (b === IAC) {
        out.push(IAC, IAC);
      } else {
        out.push(b);
      }
    }
    if (out.length) this.sock.send(out);
  }

  /**
   * Changes the window size; the server hears of it if NAWS is on.
   * @param {number} cols
   * @param {number} rows
   */
  setWindowSize(cols, rows) {
    if (cols === this.cols && rows === this.rows) return;
    this.cols = cols;
    this.rows = rows;
    if (this.local.get(OPT.NAWS) === 'yes') this._sendWindowSize();
  }

  _sendWindowSize() {
    const c = Math.max(0, Math.min(this.cols, 0xffff));
    const r = Math.max(0, Math.min(this.rows, 0xffff));
    this._sendSubnegotiation(OPT.NAWS, [c >> 8, c & 0xff, r >> 8, r & 0xff]);
  }

  _sendCommand(verb, opt) {
    this.onDebug(`send ${verbName(verb)} ${opt}`);
    this.sock.send([IAC, verb, opt]);
  }

  /** Sends IAC SB opt params IAC SE, doubling any 255 in params. */
  _sendSubnegotiation(opt, params) {
    const out = [IAC, SB, opt];
    for (const b of params) {
      out.push(b);
      if (b === IAC) out.push(IAC);
    }
    out.push(IAC, SE);
    this.onDebug(`send SB ${opt} ${params.join(' ')}`);
    this.sock.send(out);
  }
}

function verbName(verb) {
  return { [WILL]: 'WILL', [WONT]: 'WONT', [DO]: 'DO', [DONT]: 'DONT' }[verb] || String(verb);
}
