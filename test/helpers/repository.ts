// A central repository on loopback for URL-source tests: node:http (or https) on port 0 serving
// documents by path with an ETag, answering If-None-Match with 304, or failing on demand (500, down).

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

/** A certificate and key (PEM) to serve https with. */
export interface RepoTls {
  key: string;
  cert: string;
}

export interface RepoRequest {
  path: string;
  headers: IncomingHttpHeaders;
  status: number;
}

export class Repository {
  readonly requests: RepoRequest[] = [];
  /** Documents by path ("/records.json"); a new body gets a new ETag. */
  private readonly docs = new Map<string, { body: string; etag: string }>();
  private version = 0;
  /** Answer every request with this status instead (500: the repository is broken). */
  failWith: number | null = null;
  /** Accept requests and never answer them (a hung repository), until `down()`. */
  hang = false;
  /** Answer every request with a 302 to this URL instead. */
  redirectTo: string | null = null;

  private constructor(
    private server: Server,
    public port: number,
    private readonly tls: RepoTls | null,
  ) {}

  /** With `tls`, an https repository (the certificate must be one the client trusts). */
  static async start(port = 0, tls: RepoTls | null = null): Promise<Repository> {
    const repo = new Repository(createServer(), port, tls);
    await repo.listen(port);
    return repo;
  }

  private async listen(port: number): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      const path = req.url ?? '/';
      if (this.hang) {
        this.requests.push({ path, headers: req.headers, status: 0 });
        return;
      }
      if (this.redirectTo !== null) {
        this.requests.push({ path, headers: req.headers, status: 302 });
        res.writeHead(302, { location: this.redirectTo }).end();
        return;
      }
      const doc = this.docs.get(path);
      let status: number;
      if (this.failWith !== null) status = this.failWith;
      else if (doc === undefined) status = 404;
      else if (req.headers['if-none-match'] === doc.etag) status = 304;
      else status = 200;
      this.requests.push({ path, headers: req.headers, status });
      if (status === 200) res.writeHead(200, { etag: doc!.etag, 'content-type': 'application/json' }).end(doc!.body);
      else if (status === 304) res.writeHead(304, { etag: doc!.etag }).end();
      else res.writeHead(status).end('broken');
    };
    this.server = this.tls === null ? createServer(handler) : createHttpsServer(this.tls, handler);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  url(path: string): string {
    return `${this.tls === null ? 'http' : 'https'}://127.0.0.1:${this.port}${path}`;
  }

  put(path: string, body: string): void {
    this.docs.set(path, { body, etag: `"v${++this.version}"` });
  }

  /** Down: nothing listens on the port (connections refused) until `up()`. */
  async down(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async up(): Promise<void> {
    await this.listen(this.port);
  }

  close(): Promise<void> {
    return this.down();
  }
}
