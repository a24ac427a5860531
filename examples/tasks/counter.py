#!/usr/bin/env python3
"""A stateful task for the control channel (README: "Task control channel: checkpoints").

It counts ticks (one every 20 ms, or every TICK seconds: `counter.py [TICK [FSYNC]]`) and
prints the count now and then. Its state is synced to disk before it acknowledges, unless FSYNC
is 0. On `checkpoint ID DIR` it
writes its count to DIR/state and answers `ack ID SIZE`; on start it resumes from
$JM_RESTORE_DIR/state when set. `complete ID` and `abort ID` are appended to the events file
($COUNTER_EVENTS, default $JM_ATTEMPT_DIR/events.log), with a `start COUNT` line first.
Runs until SIGTERM. Python 3 standard library only.
"""
import os
import selectors
import signal
import socket
import sys

count = 0
restore = os.environ.get("JM_RESTORE_DIR")
if restore:
    with open(os.path.join(restore, "state")) as f:
        count = int(f.read().strip() or "0")

events_path = os.environ.get("COUNTER_EVENTS") or os.path.join(
    os.environ.get("JM_ATTEMPT_DIR", "."), "events.log")


def event(line):
    with open(events_path, "a") as f:
        f.write(line + "\n")


event(f"start {count}")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

sel = selectors.DefaultSelector()
sock = None
if os.environ.get("JM_CONTROL"):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["JM_CONTROL"])
    sel.register(sock, selectors.EVENT_READ)

tick = float(sys.argv[1]) if len(sys.argv) > 1 else 0.02
fsync = not (len(sys.argv) > 2 and sys.argv[2] == "0")
buf = b""
ticks = 0
while True:
    for _key, _ in sel.select(timeout=tick):
        data = sock.recv(4096)
        if not data:  # the executor closed the channel: the attempt is over
            sys.exit(0)
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            word, _, rest = line.decode().partition(" ")
            if word == "checkpoint":
                cid, _, directory = rest.partition(" ")
                state = str(count).encode()
                try:
                    with open(os.path.join(directory, "state"), "wb") as f:
                        f.write(state)
                        f.flush()
                        if fsync:
                            os.fsync(f.fileno())
                except OSError as e:
                    # E.g. the checkpoint was aborted and its folder deleted meanwhile.
                    sock.sendall(f"decline {cid} cannot write the state: {e}\n".encode())
                    continue
                sock.sendall(f"ack {cid} {len(state)}\n".encode())
            elif word in ("complete", "abort"):
                event(f"{word} {rest}")
    count += 1
    ticks += 1
    if ticks % 250 == 0:
        print(f"count {count}", flush=True)
