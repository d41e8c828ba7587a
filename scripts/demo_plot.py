"""Records a pool's metrics from the operator's /metrics during `make demo-cluster` and draws
them as an SVG: backlog by state, desired and ready workers, and saturation over time.

  demo_plot.py record --metrics-url URL --namespace NS --pool P --out samples.csv   (until SIGTERM)
  demo_plot.py draw samples.csv picture.svg

Pure Python (prometheus_client's text parser, SVG by hand), so the picture needs nothing the
project does not already install."""

from __future__ import annotations

import argparse
import csv
import html
import signal
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

SERIES = {  # column -> operator metric
    "waiting": "jobpool_queue_waiting",
    "in_flight": "jobpool_queue_inflight",
    "delayed": "jobpool_queue_delayed",
    "desired": "jobpool_workers_desired",
    "ready": "jobpool_workers_ready",
    "saturation": "jobpool_saturation",
}


def sample(text: str, namespace: str, pool: str) -> dict[str, float] | None:
    """The pool's values in one scrape, or None before the operator exports them."""
    values: dict[str, float] = {}
    wanted = {metric: column for column, metric in SERIES.items()}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in wanted and s.labels.get("namespace") == namespace and s.labels.get("pool") == pool:
                values[wanted[s.name]] = s.value
    return values if len(values) == len(SERIES) else None


def record(url: str, namespace: str, pool: str, out: Path, interval: float) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    start = time.monotonic()
    seen_pool = False
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", *SERIES])
        while not stop:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    values = sample(response.read().decode(), namespace, pool)
            except OSError:
                values = None
            if values is None and not seen_pool:
                values = dict.fromkeys(SERIES, 0.0)  # the pool not applied yet: no backlog, no workers
            elif values is not None:
                seen_pool = True
            if values is not None:
                writer.writerow([f"{time.monotonic() - start:.2f}", *(values[c] for c in SERIES)])
                f.flush()
            time.sleep(interval)


PANELS = [  # title, columns with colours, fixed maximum (None: from the data)
    ("backlog (jobs)", [("waiting", "#1f77b4"), ("in_flight", "#ff7f0e"), ("delayed", "#9467bd")], None),
    ("worker pods", [("desired", "#2ca02c"), ("ready", "#d62728")], None),
    ("saturation (busy / total slots)", [("saturation", "#8c564b")], 1.0),
]


def draw(samples: Path, picture: Path, width: int = 900, panel_height: int = 170) -> None:
    rows = list(csv.DictReader(samples.open()))
    if len(rows) < 2:
        sys.exit(f"{samples}: fewer than two samples, nothing to draw")
    t = [float(r["seconds"]) for r in rows]
    t0, t1 = t[0], t[-1]
    left, right, top, gap = 60, 20, 30, 45
    plot_w = width - left - right
    height = top + len(PANELS) * (panel_height + gap)

    def x(s):
        return left + (s - t0) / max(t1 - t0, 1e-9) * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">make demo-cluster: a JobPool scaling '
        f"0 -> N -> 0, from the operator's metrics every {t[1] - t[0]:.1f} s</text>",
    ]
    for index, (title, columns, fixed) in enumerate(PANELS):
        y0 = top + index * (panel_height + gap) + 15
        top_value = fixed or max(1.0, max(float(r[c]) for r in rows for c, _ in columns))

        def y(v):
            return y0 + panel_height - v / top_value * panel_height

        out.append(
            f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_height}" fill="none" stroke="#ccc"/>'
        )
        out.append(f'<text x="{left}" y="{y0 - 4}" font-weight="bold">{html.escape(title)}</text>')
        for fraction in (0, 0.5, 1):
            value = top_value * fraction
            out.append(f'<text x="{left - 6}" y="{y(value) + 4}" text-anchor="end">{value:g}</text>')
        for n, (column, colour) in enumerate(columns):
            points = " ".join(f"{x(s):.1f},{y(float(r[column])):.1f}" for s, r in zip(t, rows))
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
            out.append(
                f'<text x="{left + plot_w - 110}" y="{y0 + 16 + n * 15}" fill="{colour}">'
                f"{column.replace('_', ' ')}</text>"
            )
    axis_y = top + len(PANELS) * (panel_height + gap) - gap + 30
    for step in range(0, int(t1 - t0) + 1, max(1, int((t1 - t0) / 10) or 1)):
        out.append(f'<text x="{x(t0 + step):.1f}" y="{axis_y}" text-anchor="middle">{step}s</text>')
    out.append("</svg>")
    picture.write_text("\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--metrics-url", required=True)
    rec.add_argument("--namespace", required=True)
    rec.add_argument("--pool", required=True)
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--interval", type=float, default=0.5)
    drw = sub.add_parser("draw")
    drw.add_argument("samples", type=Path)
    drw.add_argument("picture", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.metrics_url, args.namespace, args.pool, args.out, args.interval)
    else:
        draw(args.samples, args.picture)


if __name__ == "__main__":
    main()
