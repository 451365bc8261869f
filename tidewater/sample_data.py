"""A deterministic sample dataset for the demo: daily weather readings as CSV."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import date, timedelta


def weather_csv(rows: int = 3650, seed: int = 8996) -> bytes:
    """``rows`` days of temperature, humidity, wind and rain, reproducible for a given seed."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "temperature_c", "humidity_pct", "wind_kmh", "rain_mm"])
    start = date(2015, 1, 1)
    for day in range(rows):
        season = math.sin(2 * math.pi * (day % 365) / 365 - math.pi / 2)
        temperature = 11 + 9 * season + rng.gauss(0, 2.5)
        humidity = min(100.0, max(20.0, 72 - 12 * season + rng.gauss(0, 8)))
        wind = max(0.0, rng.gammavariate(2.0, 6.0))
        rain = max(0.0, rng.expovariate(0.4) - 1.5) if rng.random() < 0.45 else 0.0
        writer.writerow(
            [
                (start + timedelta(days=day)).isoformat(),
                f"{temperature:.1f}",
                f"{humidity:.0f}",
                f"{wind:.1f}",
                f"{rain:.1f}",
            ]
        )
    return out.getvalue().encode()
