"""The README's recipes run verbatim from a fresh clone (issue 15.1).

Every line of every ```bash block is either run, in order, in a fresh ``git clone`` of this
checkout (no ``runs/``, no ``models/``: what a new user has), or skipped for a documented
reason in :data:`SKIP` (expensive: model loads over whole datasets, training, servers,
installs). A skip pattern that no longer matches any README line is an error, so the list
cannot go stale.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: substring of a command line -> why it is not run here
SKIP: dict[str, str] = {
    "scripts/install.sh": "installs packages",
    "python -m pytest": "the test suite itself",
    "rankstack rerank": "a neural model over thousands of pairs (minutes on CPU)",
    "rankstack teach": "a teacher model over 22,530 pairs (~15 min)",
    "rankstack fit": "training (~15 min)",
    "runs/dl19.minilm.txt --qrels": "evaluates the output of a skipped rerank line",
    "rankstack llm-rerank": "an LLM (minutes)",
    "rankstack serve": "a server that runs until stopped",
    "curl ": "needs the server",
    "benchmarks/": "benchmarks (minutes to hours)",
    "M=$(": "sets up the LLM recipe (skipped)",
    "rankstack index --dense": "encodes 22,527 passages with MiniLM (minutes)",
    "--index-dir runs/dense": "needs the dense index",
    "rankstack pipeline": "re-ranks DL19 with MiniLM (minutes)",
    "rankstack compare": "times several models (minutes)",
    "scripts/fetch_models.py": "downloads ~700 MB of model wheels",
    "runs/teacher/": "fuses/evaluates the output of skipped rerank lines",
    "teacher_mpnet.txt": "fuses the output of skipped teach lines",
    "pip install 'rankstack[pyterrier]'": "installs packages",
    "scripts/fetch_models.py all-mpnet-base-v2": "assembles a 419 MB model from split wheels",
    "save_pretrained('runs/minilm-ce-untrained')": "sets up the compare recipe (skipped)",
}


def readme_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks, continuation lines joined."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        cur = ""
        for line in block.splitlines():
            if cur:
                cur += " " + line.strip()
            else:
                cur = line.strip()
            if cur.endswith("\\"):
                cur = cur[:-1].rstrip()
                continue
            if cur and not cur.startswith("#"):
                out.append(cur)
            cur = ""
    return out


def skip_reason(cmd: str) -> str | None:
    return next((why for pat, why in SKIP.items() if pat in cmd), None)


def test_skip_list_matches_the_readme():
    cmds = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert cmds, "no bash blocks found"
    from rankstack.cli import COMMANDS

    # a pattern naming a subcommand may wait for its recipe; any other must match a line
    stale = [p for p in SKIP if not any(p in c for c in cmds)
             and p.removeprefix("rankstack ").strip() not in COMMANDS]
    assert not stale, f"skip patterns matching no README line: {stale}"
    assert any(skip_reason(c) is None for c in cmds), "every line is skipped"


@pytest.mark.slow
def test_readme_recipes_run_in_a_fresh_clone(tmp_path):
    from rankstack.datasets import data_dir
    from rankstack.errors import ConfigError

    try:
        data = data_dir()
    except ConfigError as exc:
        pytest.skip(f"data not available: {exc}")
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    assert not (clone / "runs").exists()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "rankstack").write_text(f"#!/bin/sh\nexec {sys.executable} -m rankstack.cli \"$@\"\n")
    (bindir / "rankstack").chmod(0o755)
    env = {**os.environ, "RANKSTACK_DATA": str(data), "PYTHONPATH": str(clone / "src"),
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    ran = 0
    for cmd in readme_commands((clone / "README.md").read_text(encoding="utf-8")):
        if skip_reason(cmd):
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README line failed in a fresh clone:\n  {cmd}\n" \
                                     f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 8
