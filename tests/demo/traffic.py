"""Prediction traffic for the demo, sent from inside the cluster (a Job in a predictor image).

It posts batches of synthetic churn records to the model's Service, so the requests spread over
the stable and the canary pods as real clients' would. Bounded: at most ``--rows`` records and
``--seconds`` seconds; ``--seconds`` with ``--repeat`` keeps sending (new records each round)
until the time is up, which is what a canary analysis needs. Prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import churn  # next to this script (the script's directory is first on sys.path)


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0  # connection refused/reset: counted, the next request goes to another pod


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second at most")
    parser.add_argument("--seconds", type=float, default=300.0, help="stop after this long in any case")
    parser.add_argument("--repeat", action="store_true", help="keep sending until --seconds")
    args = parser.parse_args()
    codes: Counter[int] = Counter()
    sent = 0
    started = time.monotonic()
    seed = args.seed
    while True:
        records, _ = churn.rows(args.rows, shift=args.shift, seed=seed)
        for i in range(0, len(records), args.batch):
            if time.monotonic() - started > args.seconds:
                break
            body = json.dumps({"instances": records[i:i + args.batch]}).encode()
            codes[_post(args.url, body, timeout=5.0)] += 1
            sent += len(records[i:i + args.batch])
            time.sleep(1.0 / args.rate)
        seed += 1
        if not args.repeat or time.monotonic() - started > args.seconds:
            break
    print(json.dumps({"rows": sent, "requests": sum(codes.values()), "codes": dict(codes),
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0 if codes.get(200, 0) >= sum(codes.values()) * 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
