#!/usr/bin/env python3
"""A UDP flow whose every datagram can be checked on arrival, sent the way
QUIC stacks send: UDP GSO (UDP_SEGMENT), a train of equal datagrams per
system call. Node's dgram module cannot set UDP_SEGMENT, hence Python.

  send HOST PORT --count N --size S [--train K] [--gap-ms G]
      N datagrams of S bytes, K per sendmsg, G ms between trains
  send HOST PORT --seconds T --size S [--train K]
      as fast as the socket takes them for T seconds
  recv PORT [--count N] [--idle-ms I] [--gro]
      until N datagrams arrived or none for I ms; --gro takes whole trains
      (UDP_GRO), for measuring, not for checking boundaries

Each datagram is an 8-byte sequence number, then bytes derived from it, so
the receiver verifies every byte without a copy of the stream. The receiver
prints one JSON line: counts, a digest over the intact datagrams in order
of sequence number, and the payload rate.
"""
import hashlib
import json
import socket
import struct
import sys
import time

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104


def body(seq, size):
    seed = hashlib.sha256(struct.pack('!Q', seq)).digest()
    rest = size - 8
    return struct.pack('!Q', seq) + (seed * (rest // len(seed) + 1))[:rest]


def family_of(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def send(host, port, size, train, count=None, seconds=None, gap_ms=0.0):
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if train > 1:
        s.setsockopt(SOL_UDP, UDP_SEGMENT, size)
    s.connect((host, port))
    seq = 0
    sent = 0
    end = time.monotonic() + seconds if seconds else None
    cache = {}
    while (count is None or seq < count) and (end is None or time.monotonic() < end):
        n = train if count is None else min(train, count - seq)
        if end is not None:
            # Timed runs reuse a few trains: the payload check is for counted runs.
            key = seq % 64
            buf = cache.get(key)
            if buf is None:
                buf = cache[key] = b''.join(body(seq + i, size) for i in range(n))
        else:
            buf = b''.join(body(seq + i, size) for i in range(n))
        try:
            s.send(buf)
            sent += n
        except OSError:
            if end is None:
                raise  # a counted flow must leave whole
        seq += n
        if gap_ms:
            time.sleep(gap_ms / 1000)
    print(json.dumps({'sent': sent}))


def recv(port, count=None, idle_ms=1000, gro=False, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    if gro:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
    s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', port))
    s.settimeout(idle_ms / 1000)
    print(json.dumps({'listening': port}), flush=True)
    seen = {}
    received = corrupt = duplicates = 0
    nbytes = 0
    first = last = None
    while count is None or received < count:
        try:
            data, anc, _, _ = s.recvmsg(1 << 16, 64)
        except socket.timeout:
            break
        now = time.monotonic()
        first = first or now
        last = now
        seg = len(data)
        for level, kind, value in anc:
            if level == SOL_UDP and kind == UDP_GRO:
                seg = struct.unpack('i', value[:4])[0]
        for off in range(0, len(data), seg):
            d = data[off:off + seg]
            received += 1
            nbytes += len(d)
            if gro:
                continue
            seq = struct.unpack('!Q', d[:8])[0] if len(d) >= 8 else -1
            if seq < 0 or d != body(seq, len(d)):
                corrupt += 1
            elif seq in seen:
                duplicates += 1
            else:
                seen[seq] = hashlib.sha256(d).digest()
    digest = hashlib.sha256(b''.join(seen[k] for k in sorted(seen))).hexdigest()
    elapsed = (last - first) if first and last and last > first else 0
    print(json.dumps({
        'received': received, 'intact': len(seen), 'corrupt': corrupt, 'duplicates': duplicates,
        'digest': digest, 'bytes': nbytes, 'seconds': elapsed,
        'bitsPerSecond': nbytes * 8 / elapsed if elapsed else 0,
    }), flush=True)


def expected_digest(count, size):
    return hashlib.sha256(b''.join(hashlib.sha256(body(i, size)).digest() for i in range(count))).hexdigest()


def opt(args, name, default=None, cast=int):
    return cast(args[args.index(name) + 1]) if name in args else default


def main(argv):
    mode = argv[0]
    if mode == 'send':
        send(argv[1], int(argv[2]), opt(argv, '--size'), opt(argv, '--train', 16), opt(argv, '--count'),
             opt(argv, '--seconds', None, float), opt(argv, '--gap-ms', 0.0, float))
    elif mode == 'recv':
        recv(int(argv[1]), opt(argv, '--count'), opt(argv, '--idle-ms', 1000), '--gro' in argv,
             socket.AF_INET6 if '--ipv6' in argv else socket.AF_INET)
    elif mode == 'digest':
        print(expected_digest(opt(argv, '--count'), opt(argv, '--size')))
    else:
        sys.exit(f'udp-flow: unknown mode {mode!r} (send, recv or digest)')


if __name__ == '__main__':
    main(sys.argv[1:])
