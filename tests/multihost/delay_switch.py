#!/usr/bin/env python3
"""A learning Ethernet switch in user space that holds every frame for a fixed
delay: the latency half of link emulation on a kernel without netem.

    delay_switch.py --delay-ms MS [--ready-file PATH] PORT [PORT ...]

Run it inside the namespace that holds the switch ends of the veth pairs
(netns_hosts.sh does). Each port is an AF_PACKET socket with PACKET_VNET_HDR,
so frames keep their offload state (TSO super-frames, partial checksums) from
one port to the other exactly as a kernel bridge would pass them. Frames are
forwarded in arrival order, each no earlier than MS milliseconds after it
arrived: one trip host -> switch -> host gains MS, a round trip 2 x MS.
Rate limits stay with tc tbf on the interfaces. Exits on SIGTERM / SIGINT.
With --ready-file it creates PATH once every port is open and forwarding
(netns_hosts.sh waits for that instead of sleeping a guess).
"""
import argparse
import collections
import os
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
VNET_HDR_LEN = 10  # struct virtio_net_hdr
MAX_FRAME = VNET_HDR_LEN + 65536 + 64


def open_port(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not the frames we send out of it
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--ready-file", help="created once the switch forwards")
    ap.add_argument("ports", nargs="+")
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    ports = [open_port(p) for p in args.ports]
    index = {s.fileno(): i for i, s in enumerate(ports)}
    where = {}  # source MAC -> port index
    queue = collections.deque()  # (due time, in port, frame incl. vnet header)
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller = select.epoll()
    for s in ports:
        poller.register(s.fileno(), select.EPOLLIN)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    while running[0]:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd, _ in events:
            s = ports[index[fd]]
            while True:
                try:
                    frame = s.recv(MAX_FRAME)
                except BlockingIOError:
                    break
                if len(frame) >= VNET_HDR_LEN + 14:
                    queue.append((now + delay, index[fd], frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, src, frame = queue.popleft()
            eth = VNET_HDR_LEN
            dst_mac, src_mac = frame[eth:eth + 6], frame[eth + 6:eth + 12]
            where[src_mac] = src
            out = where.get(dst_mac)
            targets = [out] if out is not None and out != src and not (dst_mac[0] & 1) else \
                [i for i in range(len(ports)) if i != src]
            for t in targets:
                try:
                    ports[t].send(frame)
                except (BlockingIOError, OSError) as e:  # a full queue drops, as a switch would
                    if not isinstance(e, BlockingIOError):
                        print(f"delay_switch: send on {args.ports[t]}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
