#!/usr/bin/env python3
"""Exactly-once per-city order counts: the two task programs of examples/city-orders-exactly-once.toml.

    exactly_once.py source ORDERS LINK_DIR [RATE]
    exactly_once.py count LINK_DIR OUT_DIR

A `source` subtask i reads the lines of ORDERS (one city per line) whose line number modulo
its parallelism is i, and streams them, RATE per second (default 500), to `count` subtask i
over a Unix socket in LINK_DIR named by the job, the subtask and the attempt (the pipelined
exchange is the programs' business; both run in one pipelined region, so they always restart
together and keep equal attempt numbers). Its state is its offset: on
`checkpoint ID DIR` it writes the offset into DIR, sends the barrier `B ID` after the last
record it sent, and acknowledges. Once the input is exhausted it stays idle (a stream).

A `count` subtask keeps per-city counts. On `checkpoint ID DIR` it waits until the barrier
`B ID` has arrived on its input, then writes into DIR the counts as they were at the barrier
(records before it counted, none after — also when the barrier came before the trigger) and
acknowledges. It is also the sink: on `complete ID` it commits the counts
of checkpoint ID to OUT_DIR/count-SUBTASK.json (written to a temporary file, then renamed: a
reader sees one committed checkpoint or the next). On a restart, JM_RESTORE_DIR holds the
state of the latest completed checkpoint: the source resumes at its offset (records after it
are sent again), the counter at its counts, which it commits at once (its `complete` may have
been lost with the executor). So the committed counts never include a record twice, and once
a checkpoint completes after the last record, they are exact.

Python 3 standard library only. Logs go to stderr.
"""
import atexit
import json
import os
import selectors
import socket
import sys
import time


def log(message):
    print(f"{os.environ.get('JM_VERTEX')}#{os.environ.get('JM_SUBTASK')} "
          f"attempt {os.environ.get('JM_ATTEMPT')}: {message}", file=sys.stderr, flush=True)


def write_atomically(path, data):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restored():
    d = os.environ.get("JM_RESTORE_DIR")
    if not d:
        return None
    with open(os.path.join(d, "state.json")) as f:
        return json.load(f)


def link_path(link_dir):
    """The socket of this region's counter, named by the attempt number: source i and count i
    form one pipelined region, so every restart restarts both and their attempt numbers stay
    equal. A source of an earlier attempt that is still winding down can never reach (and
    feed records twice into) the counter of a later one."""
    os.makedirs(link_dir, exist_ok=True)
    return os.path.join(link_dir, f"{os.environ['JM_JOB_ID']}-{os.environ['JM_SUBTASK']}"
                                  f"-{os.environ['JM_ATTEMPT']}.sock")


class Control:
    """The executor's control channel: yields (word, id, rest) commands."""

    def __init__(self, sel, handler):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ["JM_CONTROL"])
        self.buf = b""
        sel.register(self.sock, selectors.EVENT_READ, self.readable)
        self.handler = handler

    def readable(self):
        data = self.sock.recv(65536)
        if not data:
            log("control channel closed: the attempt is over")
            sys.exit(0)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            parts = line.decode().rstrip("\r").split(" ", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                self.handler(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "")

    def send(self, line):
        self.sock.sendall((line + "\n").encode())


def source(orders, link_dir, rate):
    sub, par = int(os.environ["JM_SUBTASK"]), int(os.environ["JM_PARALLELISM"])
    with open(orders) as f:
        mine = [line.strip() for i, line in enumerate(f) if i % par == sub and line.strip()]
    state = restored()
    offset = state["offset"] if state else 0
    log(f"source of {len(mine)} orders starts at offset {offset}")
    sel = selectors.DefaultSelector()
    out = []          # lines waiting for the connection
    conn = None

    def on_control(word, cid, rest):
        if word == "checkpoint":
            try:
                write_atomically(os.path.join(rest, "state.json"), json.dumps({"offset": offset}))
            except OSError as e:
                control.send(f"decline {cid} cannot write the offset: {e}")
                return
            out.append(f"B {cid}")
            control.send(f"ack {cid}")

    control = Control(sel, on_control)
    path = link_path(link_dir)
    interval = 1.0 / rate
    next_send = time.monotonic()
    while True:
        if conn is None:
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(path)
                conn = c
                log("connected to the counter")
            except OSError:
                c.close()
        if conn is not None:
            now = time.monotonic()
            while offset < len(mine) and now >= next_send:
                out.append(f"R {mine[offset]}")
                offset += 1
                next_send += interval
            if offset >= len(mine):
                next_send = now
            if out:
                try:
                    conn.sendall(("\n".join(out) + "\n").encode())
                except OSError as e:
                    log(f"the counter went away ({e}): exiting")
                    sys.exit(1)
                out.clear()
        for key, _ in sel.select(timeout=0.005 if conn is not None else 0.05):
            key.data()


def count(link_dir, out_dir):
    sub = os.environ["JM_SUBTASK"]
    committed_path = os.path.join(out_dir, f"count-{sub}.json")
    state = restored()
    counts = dict(state["counts"]) if state else {}
    os.makedirs(out_dir, exist_ok=True)

    def committed_id():
        try:
            with open(committed_path) as f:
                return json.load(f)["checkpoint"]
        except (OSError, ValueError, KeyError):
            return 0

    def commit(cid, snapshot):
        if cid > committed_id():
            write_atomically(committed_path, json.dumps({"checkpoint": cid, "counts": snapshot},
                                                        sort_keys=True))
            log(f"committed checkpoint {cid}")

    if state:
        # Restored from a completed checkpoint: commit it, in case its `complete` was lost.
        commit(state["checkpoint"], counts)
    log(f"counter starts with {sum(counts.values())} orders counted")

    sel = selectors.DefaultSelector()
    triggered = {}    # checkpoint id -> folder, waiting for the barrier
    barriers = {}     # barriers arrived before their trigger: id -> the counts at the barrier
    pending = {}      # acknowledged, not yet complete: id -> counts

    def snapshot(cid, folder, at_barrier):
        try:
            write_atomically(os.path.join(folder, "state.json"),
                             json.dumps({"checkpoint": cid, "counts": at_barrier}))
        except OSError as e:
            control.send(f"decline {cid} cannot write the counts: {e}")
            return
        pending[cid] = at_barrier
        control.send(f"ack {cid}")

    def on_control(word, cid, rest):
        if word == "checkpoint":
            if cid in barriers:
                # The barrier came first: the state is the counts as they were then, not now
                # (records after the barrier belong to the next checkpoint).
                snapshot(cid, rest, barriers.pop(cid))
            else:
                triggered[cid] = rest
        elif word == "complete" and cid in pending:
            commit(cid, pending[cid])
            for old in [k for k in pending if k <= cid]:
                del pending[old]
        elif word == "abort":
            pending.pop(cid, None)
            triggered.pop(cid, None)
            barriers.pop(cid, None)

    control = Control(sel, on_control)
    path = link_path(link_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    state_in = {"conn": None, "buf": b""}

    def data_readable():
        data = state_in["conn"].recv(65536)
        if not data:
            sel.unregister(state_in["conn"])
            state_in["conn"].close()
            state_in["conn"] = None
            log("the source went away")
            return
        buf = state_in["buf"] + data
        *lines, state_in["buf"] = buf.split(b"\n")
        for line in lines:
            kind, _, value = line.decode().partition(" ")
            if kind == "R":
                counts[value] = counts.get(value, 0) + 1
            elif kind == "B":
                cid = int(value)
                if cid in triggered:
                    snapshot(cid, triggered.pop(cid), dict(counts))
                else:
                    barriers[cid] = dict(counts)

    def accept():
        conn, _ = listener.accept()
        if state_in["conn"] is not None:
            sel.unregister(state_in["conn"])
            state_in["conn"].close()
        state_in["conn"], state_in["buf"] = conn, b""
        sel.register(conn, selectors.EVENT_READ, data_readable)

    sel.register(listener, selectors.EVENT_READ, accept)
    while True:
        for key, _ in sel.select():
            key.data()


def main(argv):
    if len(argv) >= 3 and argv[0] == "source":
        source(argv[1], argv[2], float(argv[3]) if len(argv) > 3 else 500.0)
    elif len(argv) == 3 and argv[0] == "count":
        count(argv[1], argv[2])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
