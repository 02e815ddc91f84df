"""The decoder against a million generated messages: it never raises, and says why it refuses.

`protocol.decode.Decoder.decode` promises never to raise: a device, a broken firmware or
anyone with a broker account may publish anything. This run feeds it N messages from a
seeded generator (the same seed, the same messages) mixing:

- valid telemetry, events and status of both device kinds;
- the same with one field of the wrong type, out of range, NaN or a huge number;
- valid payloads mutated: bytes flipped, inserted, deleted, truncated;
- random JSON: nested arrays and objects (up to 1,500 deep), strings with escapes and
  invalid UTF-8, numbers beyond 64 bits;
- broken topics: wrong levels, kinds, channels, device ids.

It prints the rate, what came out (readings, status changes, rejections by reason),
and exits 1 on the first exception, with the message that raised it.

    .venv/bin/python bench/fuzz_decode.py [--messages 1000000] [--seed 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.decode import Decoder
from protocol.models import Reading, Rejection, StatusChange

NOW = 1_790_000_000_000
KINDS = ("wristband", "bin")
CHANNELS = ("telemetry", "event", "status")
FIELDS = {
    ("wristband", "telemetry"): {
        "hr": 72,
        "spo2": 97,
        "sbp": 120,
        "dbp": 80,
        "temp": 36.6,
        "steps": 1200,
        "battery": 80,
        "worn": True,
        "lat": 31.2,
        "lon": 121.4,
    },
    ("wristband", "event"): {"type": "fall", "confidence": 0.9},
    ("bin", "telemetry"): {"fill": 40, "battery": 70, "temp": 25, "lid_open": False},
    ("bin", "event"): {"type": "deposit", "category": "kitchen", "detected": "kitchen"},
}
ODD = [None, "", "x" * 300, -1, 0, 2**70, -(2**70), 1e308, 1.5, True, [], {}, [1, [2]], "\u202e"]


def topic(rng: random.Random, kind: str, channel: str) -> str:
    return f"cw/v1/{kind}/w{rng.randrange(10_000):05d}/{channel}"


def valid(rng: random.Random) -> tuple[str, bytes]:
    kind, channel = rng.choice(KINDS), rng.choice(CHANNELS)
    if channel == "status":
        return topic(rng, kind, channel), rng.choice([b"online", b"offline", b" online\n"])
    choices = sorted(FIELDS[kind, channel].items())
    fields = dict(rng.sample(choices, k=rng.randint(1, min(4, len(choices)))))
    if channel == "event":
        fields["type"] = FIELDS[kind, channel]["type"]
    body = {"ts": NOW - rng.randrange(5 * 86_400_000), "seq": rng.randrange(2**31), **fields}
    return topic(rng, kind, channel), json.dumps(body).encode()


def wrong_field(rng: random.Random) -> tuple[str, bytes]:
    t, payload = valid(rng)
    if t.endswith("status"):
        return t, rng.choice([b"", b"maybe", b"\x00" * 10, "在线".encode()])
    body = json.loads(payload)
    body[rng.choice([*body, "ts", "extra"])] = rng.choice(ODD)
    raw = json.dumps(body)
    if rng.random() < 0.2:
        raw = raw.replace("1.5", rng.choice(["NaN", "Infinity", "-Infinity", "1e999"]))
    return t, raw.encode()


def mutated(rng: random.Random) -> tuple[str, bytes]:
    t, payload = valid(rng)
    data = bytearray(payload)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        i = rng.randrange(len(data) + 1)
        if op < 0.4 and data:
            data[min(i, len(data) - 1)] = rng.randrange(256)
        elif op < 0.7:
            data[i:i] = bytes([rng.randrange(256)])
        elif op < 0.9 and data:
            del data[min(i, len(data) - 1)]
        else:
            del data[i:]
    return t, bytes(data)


def nested(rng: random.Random, depth: int) -> str:
    # Half of them only arrays: 2 bytes a level reach 1,000 deep within the size limit.
    openers = ["[", '{"a":', '{"":[', "[[", '{"\\u0000":'] if rng.random() < 0.5 else ["["]
    out = []
    for _ in range(depth):
        out.append(rng.choice(openers))
    core = rng.choice(['"x"', "1", "null", '"\\ud800"', "123456789012345678901234567890"])
    closing = {"[": "]", '{"a":': "}", '{"":[': "]}", "[[": "]]", '{"\\u0000":': "}"}
    return "".join(out) + core + "".join(closing[o] for o in reversed(out))


def random_json(rng: random.Random) -> tuple[str, bytes]:
    depth = rng.choice([1, 5, 50, 400, 900, 1000, 1500])
    where = rng.choice(["field", "top", "ts"])
    inner = nested(rng, depth)
    if where == "top":
        raw = inner
    elif where == "ts":
        raw = f'{{"ts":{inner},"hr":70}}'
    else:
        raw = f'{{"ts":{NOW},"x":{inner},"hr":70}}'
    t = topic(rng, "wristband", rng.choice(["telemetry", "event"]))
    data = raw.encode()
    if rng.random() < 0.1:
        data += b"\xff\xfe"  # not UTF-8
    return t, data


def broken_topic(rng: random.Random) -> tuple[str, bytes]:
    _, payload = valid(rng)
    topics = [
        "cw/v1/wristband/w1",
        "cw/v1/wristband/w1/telemetry/extra",
        "cw/v2/wristband/w1/telemetry",
        "cw/v1/toaster/w1/telemetry",
        "cw/v1/wristband/w 1/telemetry",
        "cw/v1/wristband/" + "x" * rng.randint(60, 300) + "/telemetry",
        "cw/v1/wristband//telemetry",
        "cw/v1/wristband/w1/debug",
        "",
        "/" * rng.randint(1, 50),
        "cw/v1/wristband/设备1/telemetry",
    ]
    return rng.choice(topics), payload


GENERATORS: list[tuple[float, Callable[[random.Random], tuple[str, bytes]]]] = [
    (0.25, valid),
    (0.25, wrong_field),
    (0.25, mutated),
    (0.15, random_json),
    (0.10, broken_topic),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    weights = [w for w, _ in GENERATORS]
    makers = [g for _, g in GENERATORS]
    decoder = Decoder()
    outcomes: Counter[str] = Counter()
    made: Counter[str] = Counter()
    spent = 0.0
    started = time.monotonic()
    for i in range(args.messages):
        maker = rng.choices(makers, weights)[0]
        t, payload = maker(rng)
        made[maker.__name__] += 1
        began = time.perf_counter()
        try:
            result = decoder.decode(t, payload, NOW)
        except BaseException as exc:
            print(f"message {i} ({maker.__name__}) raised {type(exc).__name__}: {exc}")
            print(f"topic {t!r}\npayload {payload[:500]!r}")
            return 1
        spent += time.perf_counter() - began
        if isinstance(result, Rejection):
            outcomes[f"rejected: {result.reason}"] += 1
        elif isinstance(result, Reading):
            outcomes["reading"] += 1
        elif isinstance(result, StatusChange):
            outcomes["status"] += 1
        if (i + 1) % 200_000 == 0:
            print(f"  {i + 1:,} messages, {time.monotonic() - started:.0f} s", flush=True)
    print("generated: " + ", ".join(f"{name} {n:,}" for name, n in made.most_common()))
    for outcome, n in outcomes.most_common():
        print(f"  {outcome:<28} {n:>9,}")
    print(
        f"decoded {args.messages:,} messages, none raised; "
        f"{args.messages / spent:,.0f} msg/s in the decoder (seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
