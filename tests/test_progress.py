"""Progress drawn by the driver from the workers' reports: a tqdm line on a terminal, plain log lines
elsewhere, also when the workers are other processes (multi_processing)."""
from __future__ import annotations

import io
import logging
import re

from pipeline.cli import main
from pipeline.progress import Watcher, expected_bytes, read_snapshot
from tests.backfill_corpus import SINCE, UNTIL, build
from transforms.progress import ProgressWriter
from transforms.timerange import FileInfo


def test_the_driver_sums_every_workers_report_and_counts_a_file_done_at_its_size(tmp_path):
    first, second = ProgressWriter(str(tmp_path)), ProgressWriter(str(tmp_path))
    first.add("a.log", 600, 6, 5, 1)
    second.add("a.log", 400, 4, 4, 0)
    second.add("b.log", 100, 1, 1, 0)
    snap = read_snapshot(str(tmp_path), {"a.log": 1000, "b.log": 300})
    assert snap == {"bytes": 1100, "events": 10, "dead": 1, "lines": 11, "files_done": 1}


def test_a_gzip_total_is_its_uncompressed_size(tmp_path):
    import gzip

    body = b'{"x": 1}\n' * 5000
    path = tmp_path / "a.log.gz"
    path.write_bytes(gzip.compress(body))
    assert expected_bytes(str(path), path.stat().st_size) == len(body)


def test_on_a_terminal_a_tqdm_line_shows_files_events_and_dead_letters(tmp_path):
    stream = io.StringIO()
    watcher = Watcher([FileInfo("a.log", 1000, 0.0), FileInfo("b.log", 1000, 0.0)], "bar", 15.0, stream).start()
    ProgressWriter(watcher.directory).add("a.log", 1000, 10, 9, 1)
    watcher.stop(completed=False)
    line = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"files 1/2, 9 events \(\d[\d,]*/s\), 1 dead", line), line
    assert "1.00k/2.00k" in line and "50%" in line


def test_in_a_log_the_driver_prints_progress_lines_from_workers_in_other_processes(tmp_path, caplog):
    corpus = tmp_path / "in"
    build(corpus)
    caplog.set_level(logging.INFO, logger="kubehunt.progress")
    code = main(["backfill", "--since", SINCE, "--until", UNTIL, "--rotation-slack", "2m",
                 "--audit", str(corpus / "audit*"), "--falco", str(corpus / "falco*"),
                 "--output-dir", str(tmp_path / "out"), "--progress", "log", "--progress-interval", "0.2s",
                 "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "kubehunt.progress"]
    assert lines and all(line.startswith("progress: files ") for line in lines)
    counts = [int(m.group(1).replace(",", "")) for line in lines if (m := re.search(r", ([\d,]+) events", line))]
    # Only the driver logs these, and it saw the workers' events as they went (never more than the job's).
    assert max(counts) > 0 and counts == sorted(counts) and max(counts) <= 665 + 51
