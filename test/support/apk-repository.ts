/**
 * An APK package repository on loopback: a plain HTTP server answering GETs from an
 * in-memory map of paths, counting every request so tests can tell what was fetched.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface ApkRepositoryServer {
  /** `127.0.0.1:PORT` */
  host: string;
  url: string;
  files: Map<string, Buffer>;
  /** Every path requested, in order. */
  requests: string[];
  /** Serves every file under `dir` at `prefix/<relative path>`. */
  addDirectory(prefix: string, dir: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startApkRepository(): Promise<ApkRepositoryServer> {
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(pathname);
    const body = files.get(pathname);
    if (!body || req.method !== 'GET') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const walk = async (prefix: string, dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(`${prefix}/${entry.name}`, full);
      else files.set(`${prefix}/${entry.name}`, await readFile(full));
    }
  };
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    files,
    requests,
    addDirectory: walk,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
