#!/usr/bin/env python3
"""Clients of the two image-proxy protocols, in Python's standard library only.

Used by the proxy tests and bench/proxy: they start a proxy program (kontain's or
skopeo's) on one end of a socketpair, drive it, and print what they saw as JSON.

  image_proxy_client.py json-scenario CMD... -- REF...    JSON protocol, every part of each image
  image_proxy_client.py json-errors CMD... -- REF MISSING  JSON protocol, requests that must fail
  image_proxy_client.py json-layers CMD... -- REF          JSON protocol, every layer read (the bench)
  image_proxy_client.py http-scenario CMD...  -- STEP...   HTTP protocol, steps like "GET /manifest"
"""
import base64
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time

MAX_MESSAGE = 32 * 1024


def b64(data):
    return base64.b64encode(data).decode()


def drain(fd, keep):
    """Reads a pipe to its end: the bytes (keep) or their sha256 and length."""
    digest = hashlib.sha256()
    chunks = []
    length = 0
    # One reused buffer: a fresh 1 MiB object per read would cost more than the data.
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with os.fdopen(fd, 'rb', buffering=0) as pipe:
        while True:
            n = pipe.readinto(buffer)
            if not n:
                break
            length += n
            digest.update(view[:n])
            if keep:
                chunks.append(bytes(view[:n]))
    return {'bytes': b''.join(chunks) if keep else None, 'sha256': 'sha256:' + digest.hexdigest(), 'length': length}


class JsonProxy:
    """skopeo's experimental-image-proxy protocol over a SOCK_SEQPACKET socketpair."""

    def __init__(self, argv, use_sockfd=False):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if use_sockfd:
            fd = theirs.fileno()
            self.proc = subprocess.Popen(argv + ['--sockfd', str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            # As containers-image-proxy-rs does: the socket is the child's stdin.
            self.proc = subprocess.Popen(argv, stdin=theirs, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        theirs.close()
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.append(self.proc.stderr.read()), daemon=True).start()

    def request(self, method, *args):
        try:
            self.sock.send(json.dumps({'method': method, 'args': list(args)}).encode())
            message, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
        except OSError:
            message = b''
        if not message:
            self.proc.wait(timeout=30)
            time.sleep(0.1)
            raise RuntimeError(f'proxy closed the socket during {method} (exit {self.proc.returncode}): ' + b''.join(self.stderr).decode(errors='replace'))
        return json.loads(message), fds

    def call(self, method, *args):
        reply, fds = self.request(method, *args)
        for fd in fds:
            os.close(fd)
        return reply

    def call_piped(self, method, *args, keep=True):
        """A call answered with a pipe: read it on a thread while FinishPipe is asked."""
        reply, fds = self.request(method, *args)
        if not reply['success']:
            return reply, None, None
        result = {}
        reader = threading.Thread(target=lambda: result.update(drain(fds[0], keep)))
        reader.start()
        finish = self.call('FinishPipe', reply['pipeid'])
        reader.join()
        return reply, result, finish

    def raw_blob(self, img, digest):
        reply, fds = self.request('GetRawBlob', img, digest)
        if not reply['success']:
            return reply, None, None
        result, errors = {}, {}
        threads = [threading.Thread(target=lambda: result.update(drain(fds[0], False))), threading.Thread(target=lambda: errors.update(drain(fds[1], True)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return reply, result, errors['bytes'].decode()

    def shutdown(self):
        self.sock.send(json.dumps({'method': 'Shutdown', 'args': []}).encode())
        code = self.proc.wait(timeout=60)
        self.sock.close()
        return code


def outcome(reply):
    """What a reply says, without the parts that differ between implementations by design."""
    return {'success': reply['success'], 'error_code': reply.get('error_code'), 'error': reply.get('error', '')}


def version_at_least(version, wanted):
    return tuple(int(x) for x in version.split('.')) >= wanted


def json_scenario(argv, refs):
    proxy = JsonProxy(argv)
    init = proxy.call('Initialize')
    version = init['value']
    images = []
    for ref in refs:
        opened = proxy.call('OpenImage', ref)
        entry = {'ref': ref, 'open': outcome(opened)}
        images.append(entry)
        if not opened['success']:
            continue
        img = opened['value']
        reply, data, finish = proxy.call_piped('GetManifest', img)
        entry['manifest'] = {'reply': outcome(reply)}
        if data is None:
            continue
        entry['manifest'].update({'digest': reply['value'], 'bytes': b64(data['bytes']), 'finish': outcome(finish)})
        manifest = json.loads(data['bytes'])
        for method in ('GetConfig', 'GetFullConfig'):
            reply, data, finish = proxy.call_piped(method, img)
            entry[method] = {'reply': outcome(reply), 'bytes': b64(data['bytes']) if data else None, 'finish': outcome(finish) if finish else None}
        if version_at_least(version, (0, 2, 5)):
            entry['GetLayerInfo'] = proxy.call('GetLayerInfo', img)['value']
        if version_at_least(version, (0, 2, 7)):
            _reply, data, _finish = proxy.call_piped('GetLayerInfoPiped', img)
            entry['GetLayerInfoPiped'] = json.loads(data['bytes'])
        blobs = []
        for layer in manifest['layers']:
            reply, data, finish = proxy.call_piped('GetBlob', img, layer['digest'], layer['size'], keep=False)
            blobs.append({'digest': layer['digest'], 'value': reply.get('value'), 'reply': outcome(reply), 'sha256': data and data['sha256'], 'length': data and data['length'], 'finish': outcome(finish) if finish else None})
        entry['blobs'] = blobs
        if version_at_least(version, (0, 2, 6)) and manifest['layers']:
            layer = manifest['layers'][0]
            reply, data, errors = proxy.raw_blob(img, layer['digest'])
            entry['GetRawBlob'] = {'value': reply.get('value'), 'sha256': data and data['sha256'], 'errors': errors}
        entry['close'] = outcome(proxy.call('CloseImage', img))
    return {'version': version, 'images': images, 'exit': proxy.shutdown()}


def json_errors(argv, ref, missing):
    proxy = JsonProxy(argv, use_sockfd=True)
    calls = {}
    calls['before-initialize'] = outcome(proxy.call('OpenImage', ref))
    version = proxy.call('Initialize')['value']
    calls['initialize-again'] = outcome(proxy.call('Initialize'))
    calls['unknown-method'] = outcome(proxy.call('NoSuchMethod'))
    calls['open-missing'] = outcome(proxy.call('OpenImage', missing))
    calls['open-bad-arg'] = outcome(proxy.call('OpenImage', 7))
    calls['manifest-no-image'] = outcome(proxy.call('GetManifest', 99))
    calls['manifest-zero'] = outcome(proxy.call('GetManifest', 0))
    calls['finish-no-pipe'] = outcome(proxy.call('FinishPipe', 12345))
    img = proxy.call('OpenImage', ref)['value']
    calls['blob-bad-digest'] = outcome(proxy.call('GetBlob', img, 'sha256:nothex', 1))
    calls['blob-wrong-arity'] = outcome(proxy.call('GetBlob', img, 'sha256:' + '0' * 64))
    unknown = 'sha256:' + '0' * 64
    reply, _data, finish = proxy.call_piped('GetBlob', img, unknown, 10, keep=False)
    calls['blob-unknown'] = {'reply': outcome(reply), 'finish': outcome(finish) if finish else None}
    if version_at_least(version, (0, 2, 4)):
        optional = proxy.call('OpenImageOptional', missing)
        calls['optional-missing'] = {'reply': outcome(optional), 'value': optional.get('value')}
    calls['close-twice'] = [outcome(proxy.call('CloseImage', img)), outcome(proxy.call('CloseImage', img))]
    return {'version': version, 'calls': calls, 'exit': proxy.shutdown()}


def json_layers(argv, ref):
    """Every layer of one image read through GetBlob, one after another: the benchmark."""
    started = time.monotonic()
    proxy = JsonProxy(argv)
    proxy.call('Initialize')
    initialized = time.monotonic() - started
    img = proxy.call('OpenImage', ref)['value']
    opened = time.monotonic() - started
    _reply, data, finish = proxy.call_piped('GetManifest', img)
    manifest = json.loads(data['bytes'])
    total = 0
    for layer in manifest['layers']:
        reply, data, finish = proxy.call_piped('GetBlob', img, layer['digest'], layer['size'], keep=False)
        if not reply['success'] or not finish['success'] or data['sha256'] != layer['digest']:
            raise RuntimeError(f'layer {layer["digest"]}: {reply} {finish}')
        total += data['length']
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = proxy.shutdown()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The proxy is the only child reaped in between: its CPU time, user and system.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {'bytes': total, 'layers': len(manifest['layers']), 'seconds': time.monotonic() - started, 'initialize_seconds': initialized, 'open_seconds': opened, 'cpu_seconds': cpu, 'exit': code}


def http_scenario(argv, steps):
    """Requests on one keep-alive connection; each step is "METHOD PATH"."""
    import http.client

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = theirs.fileno()
    if os.environ.get('PROXY_STDIO') == '1':
        # No --sockfd: the connection is the child's stdin and stdout.
        proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
    else:
        proc = subprocess.Popen(argv + ['--sockfd', str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    conn = http.client.HTTPConnection('proxy')
    conn.sock = ours
    results = []
    for step in steps:
        method, path = step.split(' ', 1)
        try:
            conn.request(method, path)
            res = conn.getresponse()
            body = res.read()
            results.append({'step': step, 'status': res.status, 'reason': res.reason, 'headers': {k.lower(): v for k, v in res.getheaders()}, 'body': b64(body) if len(body) < 1 << 20 else None, 'sha256': 'sha256:' + hashlib.sha256(body).hexdigest(), 'length': len(body)})
        except (http.client.HTTPException, OSError) as err:
            results.append({'step': step, 'failure': type(err).__name__, 'message': str(err)})
            break
    ours.close()
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = 'timeout'
    return {'results': results, 'exit': code, 'stderr': proc.stderr.read().decode(errors='replace')[-4000:]}


def http_eof(argv, steps):
    """Writes every request at once to the child's stdin (a pipe), closes it, and reads
    stdout to its end: each answer must be complete though stdin ended before it began."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for step in steps:
        method, path = step.split(' ', 1)
        proc.stdin.write(f'{method} {path} HTTP/1.1\r\nHost: proxy\r\n\r\n'.encode())
    proc.stdin.close()
    out = proc.stdout.read()
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = 'timeout'
    results = []
    rest = out
    for step in steps:
        head, sep, rest = rest.partition(b'\r\n\r\n')
        if not sep:
            break
        lines = head.decode(errors='replace').split('\r\n')
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(':') for line in lines[1:])}
        length = int(headers.get('content-length', '0'))
        body, rest = rest[:length], rest[length:]
        results.append({'step': step, 'status': int(lines[0].split(' ')[1]), 'headers': headers, 'length': len(body), 'sha256': 'sha256:' + hashlib.sha256(body).hexdigest()})
    return {'results': results, 'exit': code, 'trailing': len(rest), 'stderr': proc.stderr.read().decode(errors='replace')[-4000:]}


def main():
    mode = sys.argv[1]
    rest = sys.argv[2:]
    split = rest.index('--')
    argv, args = rest[:split], rest[split + 1:]
    if mode == 'json-scenario':
        result = json_scenario(argv, args)
    elif mode == 'json-errors':
        result = json_errors(argv, args[0], args[1])
    elif mode == 'json-layers':
        result = json_layers(argv, args[0])
    elif mode == 'http-scenario':
        result = http_scenario(argv, args)
    elif mode == 'http-eof':
        result = http_eof(argv, args)
    else:
        raise SystemExit(f'unknown mode {mode}')
    json.dump(result, sys.stdout)


if __name__ == '__main__':
    main()
