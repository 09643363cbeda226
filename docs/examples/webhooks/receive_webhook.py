"""A webhook receiver for Flowport's deliveries: it checks each one's signature with the
account's secret, answers 204, drops repeats by `webhook-id`, and prints the run's id and
status.

    FLOWPORT_WEBHOOK_SECRET=whsec_... python receive_webhook.py [PORT]

It listens on 127.0.0.1:PORT (default 8000; 0 picks a free port) and prints where on its
first line. Needs the `standardwebhooks` library (`pip install standardwebhooks`; Flowport
depends on it, so Flowport's virtualenv has it).
"""

from __future__ import annotations

import contextlib
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# Flowport signs every delivery with the account's secret (POST /v1/webhooks:rotateSecret).
webhook = Webhook(os.environ["FLOWPORT_WEBHOOK_SECRET"])
# The ids of deliveries already handled. Flowport delivers at least once: after a crash or a
# lost answer the same delivery may come again, with the same id. Kept in memory here; a
# real receiver keeps them where its own work is recorded, in the same transaction.
handled: set[str] = set()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            # The signature covers the id, the timestamp and the body as received; the
            # library also refuses a timestamp more than 5 minutes away (a replay).
            delivery = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.answer(401)
            return
        # Checked only once verified: a forged request must not mark an id as handled.
        delivery_id = self.headers["webhook-id"]
        if delivery_id in handled:
            print(f"{delivery_id} repeated, dropped", flush=True)
        else:
            handled.add(delivery_id)
            run = delivery["run"]
            print(f"{run['id']} {run['status']}", flush=True)
        # Any 2xx ends the delivery: Flowport retries anything else.
        self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = HTTPServer(("127.0.0.1", port), Receiver)
    print(f"listening on http://127.0.0.1:{server.server_port}/", flush=True)
    # Ctrl-C stops it, without a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
