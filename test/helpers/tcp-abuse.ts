// Misbehaving DNS clients for the limits tests: TCP connections held open from a chosen source
// address, byte trickles, framed replies read one by one, and a one-socket UDP burst sender.

import dgram from 'node:dgram';
import net from 'node:net';

/** Prefixes a DNS message with its two-byte length (RFC 1035 4.2.2). */
export function frame(msg: Buffer): Buffer {
  const out = Buffer.alloc(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 10 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() >= end) return false;
    await sleep(10);
  }
  return true;
}

export interface ProbeOptions {
  host?: string;
  /** Source address, so tests can pose as several loopback clients. */
  localAddress?: string;
  timeoutMs?: number;
}

/**
 * One TCP connection to linedns. Connecting succeeds even when a cap refuses the client (the
 * kernel completes the handshake before the server sees it), so a refusal shows as a close.
 */
export class TcpProbe {
  readonly replies: Buffer[] = [];
  /** performance.now() when connected, and when closed (null while open). */
  readonly openedAt = performance.now();
  closedAt: number | null = null;
  bytesWritten = 0;
  private consumed = 0;
  private pending = Buffer.alloc(0);
  private readonly listeners = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 2 && this.pending.length >= this.pending.readUInt16BE(0) + 2) {
        const len = this.pending.readUInt16BE(0);
        this.replies.push(Buffer.from(this.pending.subarray(2, len + 2)));
        this.pending = this.pending.subarray(len + 2);
      }
      this.notify();
    });
    // A reset from a refusing server is expected here, not a test failure.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closedAt = performance.now();
      this.notify();
    });
  }

  static connect(port: number, opts: ProbeOptions = {}): Promise<TcpProbe> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to port ${port} timed out`));
      }, opts.timeoutMs ?? 2000);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new TcpProbe(socket));
      });
    });
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  /** Milliseconds the connection lived, or null while it is open. */
  get lifetime(): number | null {
    return this.closedAt === null ? null : this.closedAt - this.openedAt;
  }

  /** Writes raw bytes; false when the connection is already gone. */
  write(raw: Buffer): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(raw);
    this.bytesWritten += raw.length;
    return true;
  }

  send(...msgs: Buffer[]): boolean {
    return this.write(Buffer.concat(msgs.map(frame)));
  }

  /** The next reply not yet taken, or null on close or after `timeoutMs`. */
  async next(timeoutMs: number): Promise<Buffer | null> {
    await this.until(() => this.replies.length > this.consumed || this.closed, timeoutMs);
    return this.replies.length > this.consumed ? this.replies[this.consumed++]! : null;
  }

  /** Resolves with the connection's lifetime once closed, or null if still open after `timeoutMs`. */
  async waitClose(timeoutMs: number): Promise<number | null> {
    await this.until(() => this.closed, timeoutMs);
    return this.lifetime;
  }

  /** Sends a query and waits for its reply: a client that is really being served. */
  async ask(msg: Buffer, timeoutMs = 1000): Promise<Buffer | null> {
    if (!this.send(msg)) return null;
    return this.next(timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private until(cond: () => boolean, timeoutMs: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!cond()) return;
        done();
      };
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.listeners.add(check);
    });
  }
}

export interface BurstOptions {
  from?: string;
  /** Queries in flight at once; a whole burst when it is >= the number of queries. */
  window?: number;
  /** How long each query waits for its reply before it counts as unanswered. */
  timeoutMs?: number;
  /** Called on each reply as it arrives, with the index of its query. */
  onReply?: (index: number, reply: Buffer) => void;
}

/**
 * Sends `msgs` from one UDP socket, `window` at a time, and resolves with each query's reply
 * (null when none came). Replies are matched by ID, so in-flight queries need distinct IDs:
 * `makeQuery(i)` should use `i & 0xffff` and the window stay below 65536.
 */
export function udpBurst(port: number, count: number, makeQuery: (i: number) => Buffer, opts: BurstOptions = {}): Promise<(Buffer | null)[]> {
  const window = Math.min(opts.window ?? count, count);
  const timeoutMs = opts.timeoutMs ?? 2000;
  const out: (Buffer | null)[] = new Array<Buffer | null>(count).fill(null);
  const inFlight = new Map<number, { index: number; timer: NodeJS.Timeout }>();
  if (count === 0) return Promise.resolve(out);
  const sock = dgram.createSocket('udp4');
  let nextIndex = 0;
  let finished = 0;
  return new Promise((resolve) => {
    const settle = (id: number, reply: Buffer | null): void => {
      const slot = inFlight.get(id);
      if (slot === undefined) return;
      clearTimeout(slot.timer);
      inFlight.delete(id);
      out[slot.index] = reply;
      if (reply !== null) opts.onReply?.(slot.index, reply);
      finished++;
      if (finished === count) {
        sock.close();
        resolve(out);
        return;
      }
      launch();
    };
    const launch = (): void => {
      while (inFlight.size < window && nextIndex < count) {
        const index = nextIndex++;
        const msg = makeQuery(index);
        const id = msg.readUInt16BE(0);
        inFlight.set(id, { index, timer: setTimeout(() => settle(id, null), timeoutMs) });
        sock.send(msg, port, '127.0.0.1');
      }
    };
    sock.on('message', (m) => {
      if (m.length >= 2) settle(m.readUInt16BE(0), Buffer.from(m));
    });
    sock.on('error', () => undefined);
    sock.bind(0, opts.from ?? '127.0.0.1', launch);
  });
}
