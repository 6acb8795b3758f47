"""The command line parses, validates and refuses without importing torch, Ray or pandas (they
take seconds): heavy imports happen where the work starts. Not a timing test: it checks what is
in sys.modules, in a fresh interpreter."""
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "ray", "pandas")
ROOT = Path(__file__).resolve().parents[2]

# argv -> (exit code, a fragment of its one error line); every refusal here needs no data
REFUSALS = {
    ("train", "classifier", "--set", "lr=nan"): (2, "lr"),
    ("train", "classifier", "--set", "model=nope"): (2, "model='nope'"),
    ("train", "classifier", "--set", "nope=1"): (2, "nope"),
    ("train", "nope"): (2, "nope"),
    ("tune", "classifier", "--search", "bad"): (2, "--search 'bad'"),
    ("tune", "classifier", "--num-samples", "0"): (2, "--num-samples 0"),
    ("tune", "classifier", "--set", "optimizer=lbfgs"): (2, "optimizer='lbfgs'"),
    ("tune", "adarand", "--set", "prior_schedule=x"): (2, "prior_schedule='x'"),
    ("tune", "classifier", "--time-budget", "soon"): (2, "--time-budget 'soon'"),
    ("compare", "--seeds", "0"): (2, "--seeds 0"),
    ("compare", "--methods", "classifier,nope"): (2, "'nope'"),
    ("compare", "--classes", "0-4", "--source-classes", "3-6"): (2, "share classes"),
    ("compare", "--preset", "nope"): (2, "--preset 'nope'"),
    ("tune", "classifier", "--search", "random", "--startup-trials", "3"): (2, "--startup-trials 3"),
}
PROBE = """
import contextlib, io, json, sys
from tunelab.cli import main
heavy = {heavy!r}
results = {{"after_import": sorted(m for m in heavy if m in sys.modules)}}
for argv in {argvs!r}:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    results[" ".join(argv)] = [code, err.getvalue(), sorted(m for m in heavy if m in sys.modules)]
print(json.dumps(results))
"""


def _probe(argvs) -> dict:
    script = PROBE.format(heavy=HEAVY, argvs=[list(a) for a in argvs])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_command_line_leaves_torch_ray_and_pandas_out():
    assert _probe([])["after_import"] == []


def test_help_version_and_refusals_that_need_no_data_import_none_of_them():
    argvs = [("--version",), ("tune", "--help"), ("compare", "--help"), ("train", "--help"), *REFUSALS]
    results = _probe(argvs)
    for argv in argvs:
        code, stderr, heavy = results[" ".join(argv)]
        assert heavy == [], (argv, heavy)
        if argv in REFUSALS:
            want_code, fragment = REFUSALS[argv]
            lines = stderr.strip().splitlines()
            assert (code, len(lines)) == (want_code, 1), (argv, code, stderr)
            assert fragment in lines[0], (argv, lines[0])
        else:
            assert code == 0, (argv, code, stderr)
