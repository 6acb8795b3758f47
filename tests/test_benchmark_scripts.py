"""The benchmark scripts' own edges (their measurements are in benchmarks/RESULTS.md, not here)."""
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def test_peers_refuses_to_overwrite_an_earlier_runs_rows(tmp_path):
    out = tmp_path / "peers.csv"
    out.write_text("problem,method,seed\nmfh3_good,tunelab,0\n")
    result = subprocess.run([sys.executable, str(PEERS), "--problems", "mfh3_good", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"peers.py: --out {out} exists (an earlier run's rows); give another file name"
    assert out.read_text() == "problem,method,seed\nmfh3_good,tunelab,0\n"
