/**
 * vt100.js: a small VT100-style terminal for the browser: a fixed grid of
 * cells drawn into a <pre>, fed with text from the host, and a keyboard
 * handler that turns key presses into the bytes a VT100 would send.
 *
 * It knows the control characters (CR, LF, BS, TAB; BEL is ignored), the
 * escape sequences a shell, readline, less and vi use with TERM=vt100
 * (cursor movement, erasing, inserting and deleting, scrolling regions,
 * save/restore cursor, cursor-key mode) and SGR bold, underline, reverse
 * and the 8 colours. Unknown sequences are parsed and dropped, so they never
 * show up as text.
 *
 * Usage:
 *   import { Terminal } from './vt100.js';
 *   const term = new Terminal(document.getElementById('screen'), { cols: 80, rows: 24 });
 *   term.onInput = (text) => connection.send(text);
 *   term.write('hello\r\n');
 *
 * @module vt100
 */

// Cell attributes, packed into one number per cell.
const BOLD = 1;
const UNDERLINE = 2;
const REVERSE = 4;
const FG_SHIFT = 3; // 4 bits: 0 default, 1-8 colours 30-37
const BG_SHIFT = 7; // 4 bits: 0 default, 1-8 colours 40-47
const COLOR_MASK = 15;

const COLORS = ['#000', '#c33', '#3a3', '#cc3', '#46e', '#c3c', '#3cc', '#ddd'];

// Parser states.
const S_TEXT = 0;
const S_ESC = 1; // after ESC
const S_CSI = 2; // after ESC [
const S_OSC = 3; // after ESC ]: skipped up to BEL or ESC \
const S_CHARSET = 4; // after ESC ( or ESC ) and the like: one byte follows
const S_STRING = 5; // after ESC P, ESC ^, ESC _: skipped up to ESC \

/** Terminal is one screen; it owns the <pre> it draws into. */
export class Terminal {
  /**
   * @param {HTMLElement} el the <pre> to draw into; it is made focusable and
   *   listens for keys and pastes
   * @param {object} [opts]
   * @param {number} [opts.cols]
   * @param {number} [opts.rows]
   */
  constructor(el, opts = {}) {
    this.el = el;
    this.cols = opts.cols || 80;
    this.rows = opts.rows || 24;
    /** Receives what the user typed, as text (one char per key, escapes for special keys). */
    this.onInput = () => {};
    this.reset();
    el.tabIndex = 0;
    el.addEventListener('keydown', (e) => this._keydown(e));
    el.addEventListener('paste', (e) => {
      e.preventDefault();
      // The terminal's Enter is CR, so pasted line ends are too.
      const text = (e.clipboardData && e.clipboardData.getData('text')) || '';
      if (text) this.onInput(text.replace(/\r?\n/g, '\r'));
    });
    this.render();
  }

  /** Clears the screen and all modes, as after power-on. */
  reset() {
    this.grid = [];
    for (let r = 0; r < this.rows; r++) this.grid.push(this._blankRow());
    this.row = 0;
    this.col = 0;
    this.attr = 0;
    this.wrapPending = false; // the last column was written: wrap before the next char
    this.top = 0; // scrolling region, inclusive
    this.bottom = this.rows - 1;
    this.saved = { row: 0, col: 0, attr: 0 };
    this.cursorVisible = true;
    this.appCursorKeys = false; // DECCKM: arrows send ESC O x instead of ESC [ x
    this.newlineMode = false; // LNM: Enter sends CR LF
    this.originMode = false; // DECOM: row numbers count from the region's top
    this.autoWrap = true;
    this._state = S_TEXT;
    this._params = '';
    this._dirty = true;
  }

  _blankRow() {
    return { chars: new Array(this.cols).fill(' '), attrs: new Array(this.cols).fill(0) };
  }

  /** @returns {string} the screen as text, rows joined by newlines, trailing spaces cut */
  text() {
    return this.grid.map((r) => r.chars.join('').replace(/ +$/, '')).join('\n');
  }

  // ---- output from the host ----

  /**
   * Interprets text from the host (already decoded from bytes).
   * @param {string} s
   */
  write(s) {
    for (const ch of s) this._char(ch);
    this._scheduleRender();
  }

  _char(ch) {
    const c = ch.codePointAt(0);
    switch (this._state) {
      case S_TEXT:
        if (c === 0x1b) {
          this._state = S_ESC;
        } else if (c < 0x20 || c === 0x7f) {
          this._control(c);
        } else {
          this._print(ch);
        }
        return;
      case S_ESC:
        this._escape(ch);
        return;
      case S_CSI:
        if (c === 0x1b) {
          this._state = S_ESC; // a new sequence cancels this one
        } else if (c < 0x20) {
          this._control(c); // controls inside a sequence still act (VT100 does)
        } else if (c >= 0x40 && c <= 0x7e) {
          this._state = S_TEXT;
          this._csi(ch, this._params);
        } else {
          this._params += ch;
        }
        return;
      case S_OSC:
      case S_STRING:
        if (c === 0x07 && this._state === S_OSC) this._state = S_TEXT;
        else if (c === 0x1b) this._state = S_ESC; // the ESC of ESC \ (the \ is then dropped)
        return;
      case S_CHARSET:
        this._state = S_TEXT; // character sets are not drawn differently here
        return;
    }
  }

  _control(c) {
    switch (c) {
      case 0x08: // BS
        if (this.col > 0) this.col--;
        this.wrapPending = false;
        break;
      case 0x09: // TAB: next multiple of 8, not past the last column
        this.col = Math.min(this.cols - 1, (Math.floor(this.col / 8) + 1) * 8);
        this.wrapPending = false;
        break;
      case 0x0a: // LF, VT, FF
      case 0x0b:
      case 0x0c:
        this._index();
        break;
      case 0x0d: // CR
        this.col = 0;
        this.wrapPending = false;
        break;
      case 0x18: // CAN, SUB: abort a sequence
      case 0x1a:
        this._state = S_TEXT;
        break;
      // BEL, NUL, SO, SI and the rest: ignored.
    }
    this._dirty = true;
  }

  _print(ch) {
    if (this.wrapPending) {
      this.col = 0;
      this._index();
    }
    const line = this.grid[this.row];
    line.chars[this.col] = ch;
    line.attrs[this.col] = this.attr;
    if (this.col === this.cols - 1) {
      this.wrapPending = this.autoWrap;
    } else {
      this.col++;
    }
    this._dirty = true;
  }

  /** Moves down a line, scrolling the region up at its bottom. */
  _index() {
    this.wrapPending = false;
    if (this.row === this.bottom) this._scrollUp(1);
    else if (this.row < this.rows - 1) this.row++;
  }

  /** Moves up a line, scrolling the region down at its top. */
  _reverseIndex() {
    this.wrapPending = false;
    if (this.row === this.top) this._scrollDown(1);
    else if (this.row > 0) this.row--;
  }

  _scrollUp(n, top = this.top) {
    for (let i = 0; i < n; i++) {
      this.grid.splice(top, 1);
      this.grid.splice(this.bottom, 0, this._blankRow());
    }
  }

  _scrollDown(n, top = this.top) {
    for (let i = 0; i < n; i++) {
      this.grid.splice(this.bottom, 1);
      this.grid.splice(top, 0, this._blankRow());
    }
  }

  _escape(ch) {
    this._state = S_TEXT;
    switch (ch) {
      case '[':
        this._state = S_CSI;
        this._params = '';
        break;
      case ']':
        this._state = S_OSC;
        break;
      case 'P':
      case '^':
      case '_':
        this._state = S_STRING;
        break;
      case '(':
      case ')':
      case '*':
      case '+':
      case '#': // DECALN and line-size sequences: not supported, one byte follows
        this._state = S_CHARSET;
        break;
      case 'D': // IND
        this._index();
        break;
      case 'E': // NEL
        this.col = 0;
        this._index();
        break;
      case 'M': // RI
        this._reverseIndex();
        break;
      case '7': // DECSC
        this.saved = { row: this.row, col: this.col, attr: this.attr };
        break;
      case '8': // DECRC
        this.row = this.saved.row;
        this.col = this.saved.col;
        this.attr = this.saved.attr;
        this.wrapPending = false;
        break;
      case 'c': // RIS
        this.reset();
        break;
      // ESC = and ESC > (keypad modes), ESC \ (string end) and others: ignored.
    }
    this._dirty = true;
  }

  /** Runs one CSI sequence: final is its last char, params what came between. */
  _csi(final, params) {
    const priv = params.startsWith('?');
    if (priv || params.startsWith('>') || params.startsWith('=')) params = params.slice(1);
    const args = params.split(';').map((p) => parseInt(p, 10) || 0);
    const n = Math.max(1, args[0] || 0); // the usual "count, default 1"
    switch (final) {
      case 'A': // CUU
        this._moveTo(Math.max(this.row < this.top ? 0 : this.top, this.row - n), this.col);
        break;
      case 'B': // CUD
        this._moveTo(Math.min(this.row > this.bottom ? this.rows - 1 : this.bottom, this.row + n), this.col);
        break;
      case 'C': // CUF
        this._moveTo(this.row, this.col + n);
        break;
      case 'D': // CUB
        this._moveTo(this.row, this.col - n);
        break;
      case 'E': // CNL
        this._moveTo(this.row + n, 0);
        break;
      case 'F': // CPL
        this._moveTo(this.row - n, 0);
        break;
      case 'G': // CHA
      case '`': // HPA
        this._moveTo(this.row, n - 1);
        break;
      case 'd': // VPA
        this._moveTo(this._originRow(n - 1), this.col);
        break;
      case 'H': // CUP
      case 'f': // HVP
        this._moveTo(this._originRow(n - 1), Math.max(1, args[1] || 0) - 1);
        break;
      case 'J': // ED
        if (args[0] === 0) {
          this._eraseLine(this.row, this.col, this.cols);
          for (let r = this.row + 1; r < this.rows; r++) this._eraseLine(r, 0, this.cols);
        } else if (args[0] === 1) {
          for (let r = 0; r < this.row; r++) this._eraseLine(r, 0, this.cols);
          this._eraseLine(this.row, 0, this.col + 1);
        } else {
          for (let r = 0; r < this.rows; r++) this._eraseLine(r, 0, this.cols);
        }
        break;
      case 'K': // EL
        if (args[0] === 0) this._eraseLine(this.row, this.col, this.cols);
        else if (args[0] === 1) this._eraseLine(this.row, 0, this.col + 1);
        else this._eraseLine(this.row, 0, this.cols);
        break;
      case 'X': // ECH
        this._eraseLine(this.row, this.col, Math.min(this.cols, this.col + n));
        break;
      case '@': // ICH
        this._shiftCells(this.col, n);
        break;
      case 'P': // DCH
        this._shiftCells(this.col, -n);
        break;
      case 'L': // IL
        if (this.row >= this.top && this.row <= this.bottom) this._scrollDown(Math.min(n, this.bottom - this.row + 1), this.row);
        this.col = 0;
        break;
      case 'M': // DL
        if (this.row >= this.top && this.row <= this.bottom) this._scrollUp(Math.min(n, this.bottom - this.row + 1), this.row);
        this.col = 0;
        break;
      case 'S': // SU
        this._scrollUp(Math.min(n, this.bottom - this.top + 1));
        break;
      case 'T': // SD
        this._scrollDown(Math.min(n, this.bottom - this.top + 1));
        break;
      case 'r': { // DECSTBM
        const top = Math.max(1, args[0] || 1) - 1;
        const bottom = Math.min(this.rows, args[1] || this.rows) - 1;
        if (top < bottom) {
          this.top = top;
          this.bottom = bottom;
          this._moveTo(this._originRow(0), 0);
        }
        break;
      }
      case 'm': // SGR
        this._sgr(args);
        break;
      case 'h':
      case 'l':
        this._setModes(priv, args, final === 'h');
        break;
      case 's': // save cursor (SCO)
        this.saved = { row: this.row, col: this.col, attr: this.attr };
        break;
      case 'u': // restore cursor (SCO)
        this._moveTo(this.saved.row, this.saved.col);
        this.attr = this.saved.attr;
        break;
      // DSR (n), DA (c), tab stops (g) and others: no answer, no effect.
    }
    this._dirty = true;
  }

  _originRow(r) {
    return this.originMode ? Math.min(this.bottom, r + this.top) : r;
  }

  _moveTo(row, col) {
    this.row = Math.max(0, Math.min(this.rows - 1, row));
    this.col = Math.max(0, Math.min(this.cols - 1, col));
    this.wrapPending = false;
  }

  /** Blanks cells [from, to) of a row, keeping the current background. */
  _eraseLine(r, from, to) {
    const line = this.grid[r];
    const attr = this.attr & (COLOR_MASK << BG_SHIFT);
    for (let c = from; c < to; c++) {
      line.chars[c] = ' ';
      line.attrs[c] = attr;
    }
  }

  /** Inserts (n > 0) or deletes (n < 0) cells at col of the cursor row. */
  _shiftCells(col, n) {
    const line = this.grid[this.row];
    const count = Math.min(Math.abs(n), this.cols - col);
    if (n > 0) {
      line.chars.splice(col, 0, ...new Array(count).fill(' '));
      line.attrs.splice(col, 0, ...new Array(count).fill(0));
      line.chars.length = line.attrs.length = this.cols;
    } else {
      line.chars.splice(col, count);
      line.attrs.splice(col, count);
      while (line.chars.length < this.cols) {
        line.chars.push(' ');
        line.attrs.push(0);
      }
    }
    this.wrapPending = false;
  }

  _sgr(args) {
    for (const a of args) {
      if (a === 0) this.attr = 0;
      else if (a === 1) this.attr |= BOLD;
      else if (a === 4) this.attr |= UNDERLINE;
      else if (a === 7) this.attr |= REVERSE;
      else if (a === 22) this.attr &= ~BOLD;
      else if (a === 24) this.attr &= ~UNDERLINE;
      else if (a === 27) this.attr &= ~REVERSE;
      else if (a >= 30 && a <= 37) this.attr = (this.attr & ~(COLOR_MASK << FG_SHIFT)) | ((a - 29) << FG_SHIFT);
      else if (a === 39) this.attr &= ~(COLOR_MASK << FG_SHIFT);
      else if (a >= 40 && a <= 47) this.attr = (this.attr & ~(COLOR_MASK << BG_SHIFT)) | ((a - 39) << BG_SHIFT);
      else if (a === 49) this.attr &= ~(COLOR_MASK << BG_SHIFT);
      // 256-colour and RGB forms (38;5;n, 38;2;r;g;b) are not drawn; their
      // numbers fall through harmlessly as unknown attributes.
    }
  }

  _setModes(priv, args, on) {
    for (const a of args) {
      if (priv) {
        if (a === 1) this.appCursorKeys = on;
        else if (a === 6) {
          this.originMode = on;
          this._moveTo(this._originRow(0), 0);
        } else if (a === 7) this.autoWrap = on;
        else if (a === 25) this.cursorVisible = on;
      } else if (a === 20) {
        this.newlineMode = on;
      }
    }
  }

  // ---- drawing ----

  _scheduleRender() {
    if (!this._dirty || this._renderQueued) return;
    this._renderQueued = true;
    // One redraw per frame however much arrives in between.
    requestAnimationFrame(() => {
      this._renderQueued = false;
      this.render();
    });
  }

  /** Redraws the <pre>: runs of equal attributes become one span each. */
  render() {
    this._dirty = false;
    const frag = document.createDocumentFragment();
    for (let r = 0; r < this.rows; r++) {
      const line = this.grid[r];
      let run = '';
      let runAttr = -1;
      const flush = () => {
        if (run) frag.appendChild(this._span(run, runAttr));
        run = '';
      };
      for (let c = 0; c < this.cols; c++) {
        let attr = line.attrs[c];
        if (this.cursorVisible && r === this.row && c === this.col) attr ^= REVERSE;
        if (attr !== runAttr) {
          flush();
          runAttr = attr;
        }
        run += line.chars[c];
      }
      flush();
      if (r < this.rows - 1) frag.appendChild(document.createTextNode('\n'));
    }
    this.el.replaceChildren(frag);
  }

  _span(text, attr) {
    if (attr === 0) return document.createTextNode(text);
    const span = document.createElement('span');
    span.textContent = text;
    let fg = (attr >> FG_SHIFT) & COLOR_MASK;
    let bg = (attr >> BG_SHIFT) & COLOR_MASK;
    let fgColor = fg ? COLORS[fg - 1] : 'var(--term-fg)';
    let bgColor = bg ? COLORS[bg - 1] : 'var(--term-bg)';
    if (attr & REVERSE) [fgColor, bgColor] = [bgColor, fgColor];
    span.style.color = fgColor;
    span.style.background = bgColor;
    if (attr & BOLD) span.style.fontWeight = 'bold';
    if (attr & UNDERLINE) span.style.textDecoration = 'underline';
    return span;
  }

  // ---- keyboard ----

  _keydown(e) {
    const s = this._keyText(e);
    if (s === null) return; // not ours: let the browser have it (e.g. Ctrl-V)
    e.preventDefault();
    this.onInput(s);
  }

  /** @returns {string|null} what the key sends, or null when it sends nothing */
  _keyText(e) {
    if (e.metaKey || e.isComposing) return null;
    const csi = this.appCursorKeys ? '\x1bO' : '\x1b[';
    const special = {
      Enter: this.newlineMode ? '\r\n' : '\r',
      Backspace: '\x7f',
      Tab: '\t',
      Escape: '\x1b',
      ArrowUp: csi + 'A',
      ArrowDown: csi + 'B',
      ArrowRight: csi + 'C',
      ArrowLeft: csi + 'D',
      Home: '\x1b[1~',
      End: '\x1b[4~',
      Insert: '\x1b[2~',
      Delete: '\x1b[3~',
      PageUp: '\x1b[5~',
      PageDown: '\x1b[6~',
    };
    if (Object.hasOwn(special, e.key)) return special[e.key];
    if (e.ctrlKey && !e.altKey) {
      const k = e.key.length === 1 ? e.key.toUpperCase() : '';
      // Ctrl-Shift-V and friends stay the browser's.
      if (k === 'V' && e.shiftKey) return null;
      if (k >= '@' && k <= '_') return String.fromCharCode(k.charCodeAt(0) - 64);
      if (k === ' ' || k === '2') return '\x00';
      if (k === '/') return '\x1f';
      return null;
    }
    if ([...e.key].length !== 1) return null; // F-keys, Shift alone, ...
    return (e.altKey ? '\x1b' : '') + e.key;
  }
}
