"""Two-process DDP on CPU (gloo) through the real ``rankstack fit`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("lightning")

from rankstack.io import write_corpus, write_run, write_topics  # noqa: E402


def test_ddp_two_processes_train_and_save_the_same_format(tmp_path, request):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_fit import toy_teacher
    from tiny_models import make_tiny_bert

    backbone = make_tiny_bert(tmp_path / "backbone")
    queries, docs, teacher = toy_teacher()
    write_topics(queries, tmp_path / "topics.tsv")
    write_corpus(docs.values(), tmp_path / "corpus.jsonl")
    write_run(teacher, tmp_path / "teacher.txt")
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'out'}
backbone: {backbone}
loss: ranknet
group_size: 4
batch_size: 2
max_steps: 3
checkpoint_every: 3
query_length: 8
doc_length: 24
precision: 32-true
threads: 1
accelerator: cpu
data:
  teacher_run: {tmp_path / 'teacher.txt'}
  topics: [{tmp_path / 'topics.tsv'}]
  corpus: [{tmp_path / 'corpus.jsonl'}]
  strategy: top
""")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    proc = subprocess.run(
        [sys.executable, "-m", "rankstack.cli", "fit", "--config", str(cfg),
         "--devices", "2", "--strategy", "ddp"],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model = tmp_path / "out" / "model"
    conf = json.loads((model / "config.json").read_text())
    assert conf["rankstack_family"] == "cross-encoder"
    resolved = json.loads((model / "rankstack_train.json").read_text())
    assert resolved["devices"] == 2 and resolved["strategy"] == "ddp"
    assert resolved["steps_done"] == 3
    assert (model / "model.safetensors").exists()
    assert (tmp_path / "out" / "checkpoints" / "last.ckpt").exists()
    # rank 0's audit: 3 optimizer steps, each on its own batch of 2 groups
    steps = [json.loads(x) for x in (tmp_path / "out" / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(len(s["groups"]) == 2 for s in steps)
