"""A real QUIC peer for the lab (aioquic): a server that completes handshakes,
or a client that tries one with a given SNI and says whether it completed.

  quic_peer.py serve ADDR CERT KEY       -> serves UDP ADDR:443 until killed
  quic_peer.py connect ADDR SNI SECONDS  -> exit 0: handshake done; 1: none in time
"""

import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration

ALPN = ["hq-interop"]


async def run_server(addr, cert, key):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(cert, key)
    await serve(addr, 443, configuration=cfg)
    await asyncio.Future()


async def handshake(addr, sni):
    # The certificate is not what is tested: whether the handshake gets through is.
    cfg = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name=sni,
                            verify_mode=ssl.CERT_NONE)
    async with connect(addr, 443, configuration=cfg, wait_connected=True) as client:
        await client.ping()


def main():
    if sys.argv[1] == "serve":
        asyncio.run(run_server(*sys.argv[2:5]))
    elif sys.argv[1] == "connect":
        addr, sni, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
        try:
            asyncio.run(asyncio.wait_for(handshake(addr, sni), seconds))
        except (asyncio.TimeoutError, ConnectionError, OSError):
            sys.exit(1)
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
