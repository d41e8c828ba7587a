"""scripts/demo_plot.py: the pool's series are read from the operator's exposition and drawn."""

import importlib.util
import xml.etree.ElementTree as ET

from prometheus_client import generate_latest

from jobpool.controller.metrics import OperatorMetrics
from jobpool.queue.base import QueueStats, WorkerInfo
from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("demo_plot", ROOT / "scripts/demo_plot.py")
demo_plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_plot)


def test_sample_reads_the_pools_series_from_the_operators_metrics():
    metrics = OperatorMetrics()
    stats = QueueStats(waiting=7, in_flight=3, delayed=1, workers=(WorkerInfo("w", 4, 3, 0.0),))
    metrics.observe_pool("demo", "frames", stats, desired=2, ready=1)
    metrics.observe_pool("demo", "other", QueueStats(waiting=99), desired=9, ready=9)
    text = generate_latest(metrics.registry).decode()
    assert demo_plot.sample(text, "demo", "frames") == {
        "waiting": 7,
        "in_flight": 3,
        "delayed": 1,
        "desired": 2,
        "ready": 1,
        "saturation": 0.75,
    }
    assert demo_plot.sample(text, "demo", "absent") is None


def test_draw_makes_an_svg_with_a_line_per_series(tmp_path):
    samples = tmp_path / "metrics.csv"
    samples.write_text(
        "seconds,waiting,in_flight,delayed,desired,ready,saturation\n"
        "0.0,0,0,0,0,0,0\n0.5,100,8,0,2,1,1.0\n1.0,0,0,0,0,0,0\n"
    )
    picture = tmp_path / "picture.svg"
    demo_plot.draw(samples, picture)
    root = ET.parse(picture).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == len(demo_plot.SERIES)
    assert all(len(line.get("points").split()) == 3 for line in lines)
