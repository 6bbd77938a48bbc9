import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import { createLogger, requestLogger, traceOf } from './logging.js';
import { request } from '../../test/support/http.js';

test('trace names come from X-Cloud-Trace-Context', () => {
  assert.equal(traceOf('105445aa7843bc8bf206b120001000/1;o=1', 'proj'), 'projects/proj/traces/105445aa7843bc8bf206b120001000');
  assert.equal(traceOf('abc/1', undefined), 'abc');
  assert.equal(traceOf(undefined, 'proj'), undefined);
  assert.equal(traceOf('not a trace', 'proj'), undefined);
});

test('one JSON line per request with Cloud Logging fields', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().trim().split('\n'));
      cb();
    },
  });
  const app = express();
  app.use(requestLogger(createLogger('info', sink), 'proj'));
  app.get('/x', (_req, res) => {
    res.locals.fields.service = 'random';
    res.send('hello');
  });
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await request(`http://127.0.0.1:${port}/x`, { headers: { 'X-Cloud-Trace-Context': 'abcdef/2;o=1' } });
  await new Promise((resolve) => server.close(resolve));
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]!) as Record<string, any>;
  assert.equal(line.severity, 'INFO');
  assert.equal(line.service, 'random');
  assert.equal(line['logging.googleapis.com/trace'], 'projects/proj/traces/abcdef');
  assert.equal(line.httpRequest.status, 200);
  assert.equal(line.httpRequest.requestMethod, 'GET');
  assert.equal(line.httpRequest.responseSize, '5');
  assert.match(line.httpRequest.latency, /^\d+\.\d{3}s$/);
});

test('logged errors and fields lose their secrets: headers at any depth, auth schemes, key=value pairs, URL passwords', () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().trim().split('\n'));
      cb();
    },
  });
  const log = createLogger('info', sink, ['exactly-this-configured-value']);
  const err = Object.assign(new Error('request failed: {"headers":{"X-Kontain-Task-Secret":"s3cr3t-in-json"}} with Authorization: Bearer eyJ.tok.en'), {
    config: { url: 'https://user:hunter2hunter2@registry.example/v2/?access_token=tok123', headers: { authorization: 'Basic dXNlcjpwYXNz', 'X-Kontain-Task-Secret': 'in-a-header' } },
    response: { data: Buffer.from('password=p4ssw0rd&user=u') },
    cause: new Error('echo: exactly-this-configured-value'),
  });
  log.error({ err, request: { headers: { Cookie: 'session=abc' } } }, 'failed with token=raw-token-value');
  const line = lines.join('\n');
  for (const secret of ['s3cr3t-in-json', 'eyJ.tok.en', 'hunter2hunter2', 'tok123', 'dXNlcjpwYXNz', 'in-a-header', 'p4ssw0rd', 'exactly-this-configured-value', 'session=abc', 'raw-token-value']) {
    assert.ok(!line.includes(secret), `${secret} is in the log: ${line}`);
  }
  const parsed = JSON.parse(lines[0]!) as Record<string, any>;
  assert.equal(parsed.err.type, 'Error');
  assert.match(parsed.err.message, /^request failed: /, 'the rest of the message is kept');
  assert.equal(parsed.err.config.headers.authorization, '[REDACTED]');
  assert.match(parsed.err.config.url, /^https:\/\/user:\[REDACTED\]@registry\.example\/v2\/\?access_token=\[REDACTED\]$/);
  assert.equal(parsed.message, 'failed with token=[REDACTED]');
});
