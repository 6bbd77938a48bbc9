import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ReadyAnswer } from '../registry/manifests.js';
import { BoundedMap } from '../util/bounded-map.js';
// Written answers are bounded as the fast entry bounds its remembered ones.
import { KEPT_ROUTES as MAX_WRITTEN_ANSWERS, MAX_REMEMBERED_BYTES as MAX_WHOLE_BODY } from './fast-entry.js';

/** What the connection entry asks the fast entry (fast-entry.ts) for. */
export interface RememberedAnswers {
  /**
   * The answer the fast entry remembers for a GET (or HEAD) of `url` with these Host and
   * Accept lines and no other header that matters, counted as answered; undefined when
   * node:http's path has to answer it (request log lines wanted, nothing remembered, stale).
   */
  take(url: string, host: string, accept: string | undefined, head: boolean): ReadyAnswer | undefined;
}

export interface ConnectionEntry {
  /** From now on, what `answers` remembers is answered on the connection. */
  use(answers: RememberedAnswers): void;
  /** Ends the connections it holds, all idle between requests: the server is closing. */
  closeIdle(): void;
}

/** A request head longer than this is left to node:http (which refuses beyond 16 KiB). */
const MAX_PLAIN_HEAD = 8 * 1024;
/** What ends a request head. */
const BLANK_LINE = '\r\n\r\n';
/** One header line as RFC 9110 writes it: a token, a colon, a value of visible ASCII with inner spaces. */
const HEADER_LINE = /([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*((?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?)[\t ]*\r\n/y;
/** A request target kontain answers on the connection: the API's, visible ASCII only. */
const PLAIN_TARGET = /^\/v2\/[\x21-\x7e]*$/;
/** Headers that change what a request means or how its connection goes on: such a request is node:http's. */
const NOT_PLAIN = new Set([
  'content-length',
  'transfer-encoding',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'range',
  'if-range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
]);

/** An answer's bytes on a connection kept alive, with the Date line of second `second`. */
interface WrittenAnswer {
  second: number;
  /** Status line and headers: HEAD's answer. */
  head: Buffer;
  /** And the body, for a body of up to MAX_WHOLE_BODY. */
  whole: Buffer | undefined;
}

interface PlainRequest {
  url: string;
  host: string;
  accept: string | undefined;
  head: boolean;
  /** `Connection: close`: the connection ends with the answer. */
  close: boolean;
}

const ignore = () => undefined;

/** The status line and the answer's headers, in order. */
function headLines(answer: ReadyAnswer): string {
  let text = 'HTTP/1.1 200 OK\r\n';
  // The fast entry has written these through node:http's writeHead, which checks them.
  for (let i = 0; i < answer.headers.length; i += 2) text += `${answer.headers[i]}: ${answer.headers[i + 1]}\r\n`;
  return text;
}

/**
 * Answers the requests pulls repeat most, a manifest the fast entry remembers, on the
 * connection itself, before node:http reads them; everything else, and the rest of the
 * connection from the first request it does not answer, goes to node:http.
 *
 * Why by hand: node:http's own work per request (a parser callback into JavaScript, an
 * IncomingMessage and a ServerResponse, both streams, and their events) is most of what a
 * remembered answer costs, and a server that does nothing else answers about half of what
 * nginx does on the same tree (bench/static); writing the remembered bytes straight to the
 * socket answers about 0.9 of nginx. No library parses HTTP/1.1 requests for this: the
 * parsers are node:http's own (internal) or full servers.
 *
 * So the parsing is kept narrow rather than complete: what is read is only whole
 * `GET`/`HEAD … HTTP/1.1` requests, one after another, of plain header lines (RFC 9110
 * tokens and visible-ASCII values, CRLF, no folding), with one Host, Accept lines joined as
 * node:http joins them, `Connection: keep-alive`, `close` or none, and no header that gives
 * the request a body or a condition (NOT_PLAIN). Anything else (another method, a byte it
 * does not expect, a request still unfinished after a second read) is handed, from that
 * request on, to node:http with the connection: node:http then reads and answers it as if
 * it had read it from the start, and keeps the connection. Both read a plain request
 * alike, so a request is never read two ways on one connection.
 * The answer's bytes are node:http's for the same answer: the status line, the answer's
 * headers in order, then Date, Connection and Keep-Alive as node:http adds them; after a
 * `Connection: close` request the connection ends, as node:http ends it.
 */
export function installConnectionEntry(server: Server, options: { headersTimeoutMs: number; log: Logger }): ConnectionEntry {
  // node:http reads HTTP on a socket by its 'connection' listener, the first one a server
  // has (its constructor adds it). Another one first: the entry stays out of the way.
  const [nodeListener] = server.listeners('connection') as Array<(this: Server, socket: Socket) => void>;
  if (nodeListener?.name !== 'connectionListener') {
    options.log.warn("node:http's connection listener was not found: remembered answers are written through node:http");
    return { use: () => undefined, closeIdle: () => undefined };
  }
  let answers: RememberedAnswers | undefined;
  const held = new Set<Socket>();
  /**
   * Answers' bytes as last written, the Date line's second with them: one write per answer
   * is the cheapest. As many as the fast entry remembers answers (each at most its 16 KiB
   * and the head); a longer body is written after its head, not copied.
   */
  const writtenAnswers = new BoundedMap<ReadyAnswer, WrittenAnswer>(MAX_WRITTEN_ANSWERS);
  let second = -1;
  let date = '';

  const writeAnswer = (socket: Socket, answer: ReadyAnswer, request: PlainRequest): void => {
    const now = Math.floor(Date.now() / 1000);
    if (now !== second) {
      second = now;
      date = `Date: ${new Date(now * 1000).toUTCString()}\r\n`;
    }
    if (request.close) {
      // Once per connection at most: made each time.
      socket.write(Buffer.from(`${headLines(answer)}${date}Connection: close\r\n\r\n`, 'latin1'));
      if (!request.head) socket.write(answer.body);
      return;
    }
    let written = writtenAnswers.get(answer);
    if (written === undefined || written.second !== second) {
      // Connection and Keep-Alive as node:http writes them, and the blank line.
      const keepAliveSeconds = Math.floor(server.keepAliveTimeout / 1000);
      const head = Buffer.from(`${headLines(answer)}${date}Connection: keep-alive\r\n${keepAliveSeconds > 0 ? `Keep-Alive: timeout=${keepAliveSeconds}\r\n` : ''}\r\n`, 'latin1');
      written = { second, head, whole: answer.body.length <= MAX_WHOLE_BODY ? Buffer.concat([head, answer.body]) : undefined };
      writtenAnswers.set(answer, written);
    }
    if (request.head) socket.write(written.head);
    else if (written.whole) socket.write(written.whole);
    else {
      socket.write(written.head);
      socket.write(answer.body);
    }
  };

  /**
   * Answers the whole requests at the start of `chunk` that it can; returns how many bytes
   * they took, or -1 when one of them closes the connection (`Connection: close`).
   */
  const answerRequests = (socket: Socket, chunk: Buffer, from: RememberedAnswers): number => {
    // latin1: one character per byte, so offsets in the text are offsets in the chunk.
    const text = chunk.toString('latin1');
    let at = 0;
    let answered = 0;
    while (at < text.length) {
      const end = text.indexOf(BLANK_LINE, at);
      if (end === -1 || end - at > MAX_PLAIN_HEAD) break;
      const request = readPlainRequest(text, at, end);
      const answer = request && from.take(request.url, request.host, request.accept, request.head);
      if (!answer) break;
      // Answers to pipelined requests go out together.
      if (answered++ === 1) socket.cork();
      writeAnswer(socket, answer, request!);
      at = end + 4;
      // As node:http does, the connection ends with this answer and what follows is not read.
      if (request!.close) {
        at = -1;
        break;
      }
    }
    if (answered > 1) socket.uncork();
    return at;
  };

  const onConnection = (socket: Socket): void => {
    const from = answers;
    if (from === undefined || socket.destroyed) {
      nodeListener.call(server, socket);
      return;
    }
    held.add(socket);
    let keptAlive = false;
    const resume = () => socket.resume();
    /** The start of a request a read cut off, if the last read ended in one. */
    let unfinished: Buffer | undefined;
    const onData = (chunk: Buffer) => {
      try {
        readChunk(chunk);
      } catch (err) {
        // Thrown from a socket's event it would take the process down: this connection goes instead.
        options.log.error({ err }, 'connection entry failed; the connection is closed');
        socket.destroy();
      }
    };
    const readChunk = (chunk: Buffer) => {
      const data = unfinished === undefined ? chunk : Buffer.concat([unfinished, chunk]);
      const answered = answerRequests(socket, data, from);
      if (answered === -1) return closeAfterAnswer();
      if (answered < data.length) {
        // A request cut off by the end of a read (pipelined requests are read in 64 KiB
        // pieces) waits for the next read, once: if that does not finish it, a client is
        // sending it slowly, and node:http's timeouts for that apply.
        const rest = data.subarray(answered);
        if ((unfinished !== undefined && answered === 0) || rest.length >= MAX_PLAIN_HEAD || !couldBePlain(rest.toString('latin1'))) return handOff(rest);
        unfinished = Buffer.from(rest);
      } else unfinished = undefined;
      if (!keptAlive) {
        // Between requests a connection may idle as long as node:http lets it.
        keptAlive = true;
        socket.setTimeout(server.keepAliveTimeout || options.headersTimeoutMs);
      }
      // A client that sends and does not read: stop reading it until it has taken its answers.
      if (socket.writableNeedDrain) {
        socket.pause();
        socket.once('drain', resume);
      }
    };
    const onTimeout = () => socket.destroy();
    const onEnd = () => {
      // node:http ends a connection whose client has ended its side once its answers are out.
      if (unfinished === undefined) return socket.end();
      // And answers a request the end cut off (400): it gets the request, then the end.
      handOff(unfinished);
      socket.emit('end');
    };
    const onError = () => socket.destroy();
    const onClose = () => held.delete(socket);
    const release = () => {
      socket.removeListener('data', onData);
      socket.removeListener('timeout', onTimeout);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.setTimeout(0);
      held.delete(socket);
    };
    /** The last answer is written: ends the connection once it is out, reading nothing more (the idle timeout still holds). */
    const closeAfterAnswer = () => {
      socket.removeListener('data', onData);
      unfinished = undefined;
      socket.end();
      // Unread bytes are dropped, not held.
      socket.on('data', ignore);
    };
    /** node:http takes the connection over, with `rest`, the bytes not answered here, as what it reads first. */
    const handOff = (rest: Buffer) => {
      release();
      nodeListener.call(server, socket);
      // node:http's 'data' listener reads the bytes; later ones it reads from the socket itself.
      if (rest.length > 0) socket.emit('data', rest);
    };
    // The first request has as long as node:http gives a request's headers.
    socket.setTimeout(options.headersTimeoutMs);
    socket.on('data', onData);
    socket.on('timeout', onTimeout);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  };

  server.removeListener('connection', nodeListener);
  server.prependListener('connection', onConnection);

  return {
    use(remembered) {
      answers = remembered;
    },
    closeIdle() {
      for (const socket of held) socket.end();
    },
  };
}

/** The start of a request line, up to its CR: a method the entry reads, a target, the version. */
const REQUEST_LINE_START = /^(?:G(?:E(?:T(?: [\x21-\x7e]*(?: (?:H(?:T(?:T(?:P(?:\/(?:1(?:\.1?)?)?)?)?)?)?)?)?\r?)?)?)?|H(?:E(?:A(?:D(?: [\x21-\x7e]*(?: (?:H(?:T(?:T(?:P(?:\/(?:1(?:\.1?)?)?)?)?)?)?)?)?\r?)?)?)?)?)$/;
/** A byte no plain request has, or a line end other than CRLF (a CR at the very end may be one). */
const NOT_PLAIN_BYTES = /[^\t\r\n\x20-\x7e]|(?:^|[^\r])\n|\r(?!\n|$)/;

/**
 * Whether `text`, the start of a request head, can still become one the entry reads: it is
 * held for the next read only then, and anything node:http would refuse at once is its.
 */
function couldBePlain(text: string): boolean {
  if (NOT_PLAIN_BYTES.test(text)) return false;
  const lastLine = text.lastIndexOf('\r\n');
  if (lastLine === -1) return REQUEST_LINE_START.test(text);
  // The whole lines so far, read as a request with nothing more (Host may follow).
  return readPlainRequest(text.slice(0, lastLine + 2) + '\r\n', 0, lastLine, true) !== undefined;
}

/**
 * The request in text[start, end) (end: its blank line), if it is one the connection entry
 * reads; `partial`: only its first lines, which need not have its Host line yet.
 */
function readPlainRequest(text: string, start: number, end: number, partial = false): PlainRequest | undefined {
  let head: boolean;
  let at: number;
  if (text.startsWith('GET ', start)) {
    head = false;
    at = start + 4;
  } else if (text.startsWith('HEAD ', start)) {
    head = true;
    at = start + 5;
  } else return undefined;
  const lineEnd = text.indexOf('\r\n', at);
  const space = text.indexOf(' ', at);
  if (space === -1 || space > lineEnd || lineEnd - space !== 9 || !text.startsWith(' HTTP/1.1', space)) return undefined;
  const url = text.slice(at, space);
  if (!PLAIN_TARGET.test(url)) return undefined;
  let host: string | undefined;
  let accept: string | undefined;
  let close = false;
  HEADER_LINE.lastIndex = lineEnd + 2;
  // The last line's CRLF is the first half of the blank line's.
  while (HEADER_LINE.lastIndex < end + 2) {
    const match = HEADER_LINE.exec(text);
    if (match === null || HEADER_LINE.lastIndex > end + 2) return undefined;
    const name = match[1]!.toLowerCase();
    const value = match[2]!;
    if (name === 'host') {
      if (host !== undefined) return undefined;
      host = value;
    } else if (name === 'accept') {
      // Several lines are one list, joined as node:http joins them.
      accept = accept === undefined ? value : `${accept}, ${value}`;
    } else if (name === 'connection') {
      const option = value.toLowerCase();
      if (option === 'close') close = true;
      else if (option !== 'keep-alive') return undefined;
    } else if (NOT_PLAIN.has(name)) return undefined;
  }
  if (host === undefined && !partial) return undefined;
  return { url, host: host ?? '', accept, head, close };
}
