"""A tiny HTTP client the service tests run inside a netns: it asks ADDR:PORT N times and
prints how many answers each body gave (or which error), as a dict."""

import textwrap

HTTP_CLIENT = textwrap.dedent("""
    import socket, sys, collections
    addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seen = collections.Counter()
    for _ in range(n):
        try:
            with socket.create_connection((addr, port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            seen[data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip() or "empty"] += 1
        except OSError as exc:
            seen[type(exc).__name__] += 1
    print(dict(seen))
""")
