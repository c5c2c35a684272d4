"""An HTTP probe for scripts/bench downtime: GET / on 127.0.0.1:PORT every
PERIOD seconds until the file STOP exists, each given TIMEOUT seconds (default
0.5; longer for a socket-activated server, whose first request waits for it to
start); one line per request on stdout: `START_TIME OK` (Unix time in seconds,
1 for a 200 answer, else 0)."""
import os
import socket
import sys
import time

port, period, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
out = sys.stdout
while not os.path.exists(stop):
    start = time.time()
    ok = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.settimeout(timeout)
            c.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            reply = c.recv(64)
            ok = int(reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"))
    except OSError:
        pass
    out.write("%.4f %d\n" % (start, ok))
    out.flush()
    time.sleep(max(0.0, period - (time.time() - start)))
