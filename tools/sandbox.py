#!/usr/bin/env python3
"""Run the local QuickBooks sandbox in the foreground and print NAME=value env-var lines.

    python tools/sandbox.py --port 8080 --latency-ms 150 > /tmp/qbo_sandbox.env &
    sleep 1; set -a; eval "$(cat /tmp/qbo_sandbox.env)"; set +a
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a checkout without installing

from qbo_sandbox import Faults, Sandbox, SandboxConfig  # noqa: E402

FAULT_OPTIONS = ("error_500_rate", "html_503_rate", "lost_response_rate", "throttle_rate", "throttle_xml_ratio",
                 "token_death_rate", "slow_rate", "slow_seconds", "slow_before_write_rate",
                 "token_endpoint_500_rate", "truncated_rate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: limits, latency, company preferences, fault rates."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--realm-id", default=SandboxConfig.realm_id)
    parser.add_argument("--client-id", default=SandboxConfig.client_id)
    parser.add_argument("--client-secret", default=SandboxConfig.client_secret)
    parser.add_argument("--redirect-uri", action="append", default=None,
                        help="allowed OAuth redirect URI (repeatable; default http://localhost:8765/callback)")
    parser.add_argument("--rpm", type=int, default=500, help="requests per minute per realm, batch included")
    parser.add_argument("--batch-rpm", type=int, default=40, help="batch requests per minute per realm")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight at once per realm")
    parser.add_argument("--rps", type=int, default=10, help="requests per second per realm")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="length of the sliding rate window")
    parser.add_argument("--request-cap-seconds", type=float, default=120.0,
                        help="QuickBooks' cap: nothing of a request executes after this long")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-per-batch-op-ms", type=float, default=0.0)
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    parser.add_argument("--no-custom-txn-numbers", action="store_true",
                        help="company auto-numbers sales forms and ignores the DocNumber sent")
    parser.add_argument("--closed-through", default=None,
                        help="books closed through this date (YYYY-MM-DD): writes dated on or before it get 6210")
    parser.add_argument("--no-duplicate-docnumber-check", action="store_true",
                        help="accept a second Invoice with the same DocNumber")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--retry-after-seconds", type=float, default=None)
    parser.add_argument("--throttle-burst", type=int, default=3)
    for name in FAULT_OPTIONS:
        default = 0.5 if name == "throttle_xml_ratio" else 5.0 if name == "slow_seconds" else 0.0
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=default)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SandboxConfig:
    """SandboxConfig from parsed options."""
    faults = Faults(seed=args.seed, throttle_burst=args.throttle_burst, retry_after_seconds=args.retry_after_seconds,
                    **{name: getattr(args, name) for name in FAULT_OPTIONS})
    return SandboxConfig(realm_id=args.realm_id, client_id=args.client_id, client_secret=args.client_secret,
                         host=args.host, port=args.port, requests_per_minute=args.rpm,
                         batch_requests_per_minute=args.batch_rpm, max_concurrency=args.concurrency,
                         requests_per_second=args.rps, request_cap_seconds=args.request_cap_seconds,
                         window_seconds=args.window_seconds, latency_ms=args.latency_ms,
                         latency_per_batch_op_ms=args.latency_per_batch_op_ms,
                         access_token_ttl=args.access_token_ttl,
                         custom_txn_numbers=not args.no_custom_txn_numbers,
                         duplicate_docnumber_check=not args.no_duplicate_docnumber_check,
                         closed_through=args.closed_through,
                         redirect_uris=tuple(args.redirect_uri or SandboxConfig.redirect_uris),
                         faults=faults, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    """Start the sandbox, print its coordinates as NAME=value lines, serve until Ctrl-C or SIGTERM."""
    sandbox = Sandbox(build_config(parse_args(argv))).start()
    tokens = sandbox.issue_tokens()
    lines = {
        "QBO_SANDBOX_URL": sandbox.base_url,
        "QBO_API_BASE": sandbox.api_base,
        "QBO_DISCOVERY_URL": sandbox.discovery_url,
        "QBO_ENVIRONMENT": "sandbox",
        "QBO_REALM_ID": sandbox.realm_id,
        "QBO_CLIENT_ID": sandbox.config.client_id,
        "QBO_CLIENT_SECRET": sandbox.config.client_secret,
        "QBO_REFRESH_TOKEN": tokens["refresh_token"],
    }
    for name, value in lines.items():
        print(f"{name}={value}")
    sys.stdout.flush()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
