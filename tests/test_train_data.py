"""rankstack.train.data: sampling strategies, skip reasons, teacher targets, resuming."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from rankstack.errors import ConfigError  # noqa: E402
from rankstack.records import Doc, Qrels, Query, Ranking, Run  # noqa: E402
from rankstack.train.data import (  # noqa: E402
    SKIP_REASONS,
    GroupDataset,
    GroupSampler,
    QrelsGroupBuilder,
    TeacherGroupBuilder,
    TrainGroup,
    collate_groups,
)
from rankstack.train.losses import RankNet  # noqa: E402

N = 4


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture()
def data():
    """Synthetic topics/corpus/run/qrels with one query per skip reason.

    q1, q9: usable (10 candidates each, relevant docs inside).
    q2: in the run, no qrels                     -> no_relevant
    q3: in the run, no text                      -> missing_query_text
    q4: in the qrels only                        -> no_candidates
    q5: 3 candidates (< N)                       -> too_few_candidates
    q6: its one relevant doc has no text         -> relevant_missing_from_corpus / not in cands
    q7: one candidate has no text (x7)           -> counted; skip_query -> doc_missing_from_corpus
    q8: relevant only at rank 9                  -> no_relevant_in_top (strategy top)
    """
    rankings = {
        "q1": ids("a", 10), "q9": ids("i", 10), "q2": ids("b", 10), "q3": ids("c", 10),
        "q5": ids("e", 3), "q6": ids("f", 10), "q7": ids("g", 9) + ["x7"], "q8": ids("h", 10),
    }
    run = Run({q: Ranking.from_order(q, d, "bm25") for q, d in rankings.items()}, "bm25")
    qrels = Qrels({
        "q1": {"a2": 2, "a5": 1, "a7": 0},
        "q9": {"i0": 1, "i3": 3},
        "q4": {"zz": 1},
        "q5": {"e0": 1},
        "q6": {"nodoc": 2},
        "q7": {"g1": 1},
        "q8": {"h9": 1},
    })
    queries = {q: Query(q, f"query {q}") for q in ("q1", "q2", "q4", "q5", "q6", "q7", "q8", "q9")}
    docs = {d: Doc(d, f"text of {d}") for r in rankings.values() for d in r if d != "x7"}
    return queries, docs, run, qrels


def build(data, **kw) -> QrelsGroupBuilder:
    queries, docs, run, qrels = data
    return QrelsGroupBuilder(queries, docs, run, qrels, n_docs=kw.pop("n_docs", N), **kw)


def by_qid(builder, epoch: int = 0) -> dict[str, TrainGroup]:
    return {g.query_id: g for g in builder.groups(epoch)}


# ---------------------------------------------------------------------------------------------
# sampling strategies


def test_single_relevant(data):
    _, _, run, qrels = data
    b = build(data, strategy="single_relevant")
    assert b.query_ids == ["q1", "q9", "q7", "q8"]
    positives = set()
    for epoch in range(12):
        for g in b.groups(epoch):
            grades = qrels[g.query_id]
            cands = run[g.query_id].doc_ids
            assert len(g) == N and len(set(g.doc_ids)) == N
            assert grades.get(g.doc_ids[0], 0) >= 1  # the relevant one first
            negs = g.doc_ids[1:]
            assert all(grades.get(d, 0) < 1 and d in cands for d in negs)
            assert [cands.index(d) for d in negs] == sorted(cands.index(d) for d in negs)
            assert list(g.targets) == [float(grades.get(d, 0)) for d in g.doc_ids]
            assert g.query == f"query {g.query_id}"
            assert g.docs == tuple(f"text of {d}" for d in g.doc_ids)
            if g.query_id == "q1":
                positives.add(g.doc_ids[0])
    assert positives == {"a2", "a5"}  # the positive is sampled among the relevant ones
    # binary_rel=2: a5 (grade 1) is now a possible negative, a2 the only positive
    b2 = build(data, strategy="single_relevant", binary_rel=2)
    seen = set()
    for epoch in range(12):
        g = by_qid(b2, epoch)["q1"]
        assert g.doc_ids[0] == "a2"
        seen.update(g.doc_ids[1:])
    assert "a5" in seen and "a2" not in seen


def test_top(data):
    b = build(data, strategy="top")
    g = by_qid(b)["q1"]
    assert g.doc_ids == ("a0", "a1", "a2", "a3")
    assert g.targets == (0.0, 0.0, 2.0, 0.0)
    assert by_qid(b, epoch=3)["q1"] == g  # no randomness in 'top'
    assert "q8" not in b.query_ids and b.stats.skipped["no_relevant_in_top"] == 1


def test_random(data):
    b = build(data, strategy="random")
    samples = set()
    for epoch in range(10):
        g = by_qid(b, epoch)["q1"]
        pool = [f"a{i}" for i in range(10)]
        assert len(set(g.doc_ids)) == N and set(g.doc_ids) <= set(pool)
        assert list(g.doc_ids) == sorted(g.doc_ids, key=pool.index)  # run order kept
        assert any(d in ("a2", "a5") for d in g.doc_ids)  # ensure_relevant
        samples.add(g.doc_ids)
    assert len(samples) > 3  # really random across epochs
    # without ensure_relevant some sample of q1 lacks a relevant doc (2 of 10 are relevant)
    b2 = build(data, strategy="random", ensure_relevant=False)
    assert any(not {"a2", "a5"} & set(by_qid(b2, e)["q1"].doc_ids) for e in range(30))


def test_top_and_random(data):
    b = build(data, strategy="top_and_random", n_docs=5)
    tails = set()
    for epoch in range(10):
        g = by_qid(b, epoch)["q1"]
        assert g.doc_ids[:3] == ("a0", "a1", "a2")  # ceil(5/2) = 3 from the top
        assert len(g) == 5 and set(g.doc_ids[3:]) <= {f"a{i}" for i in range(3, 10)}
        tails.add(g.doc_ids[3:])
    assert len(tails) > 3


def test_depth_limits_candidates(data):
    b = build(data, strategy="random", depth=5)
    for epoch in range(5):
        assert set(by_qid(b, epoch)["q1"].doc_ids) <= {f"a{i}" for i in range(5)}


# ---------------------------------------------------------------------------------------------
# unusable queries: counted per reason, logged, never silently dropped


def test_skip_reasons_counted_and_logged(data, caplog):
    with caplog.at_level(logging.WARNING, logger="rankstack.train.data"):
        b = build(data, strategy="single_relevant")
    st = b.stats
    assert dict(st.skipped) == {
        "no_relevant": 1, "missing_query_text": 1, "no_candidates": 1,
        "too_few_candidates": 1, "relevant_missing_from_corpus": 1,
    }
    assert st.skipped_query_ids == {
        "no_relevant": ["q2"], "missing_query_text": ["q3"], "no_candidates": ["q4"],
        "too_few_candidates": ["q5"], "relevant_missing_from_corpus": ["q6"],
    }
    assert st.n_queries == 9 and st.n_groups == 4 == len(b)
    assert st.n_groups + st.n_skipped == st.n_queries  # every query accounted for
    assert st.docs_missing_from_corpus == 2  # x7 (candidate of q7) and nodoc (relevant of q6)
    assert set(st.skipped) <= set(SKIP_REASONS)
    assert "too_few_candidates=1" in caplog.text and "no_relevant=1" in caplog.text

    # other strategies: q6's relevant is not among its candidates; q8 fails only 'top'
    assert dict(build(data, strategy="random").stats.skipped)["relevant_not_in_candidates"] == 1
    assert "q8" in build(data, strategy="random").query_ids

    # skip_query: q7's candidate without text makes q7 unusable
    st2 = build(data, strategy="top_and_random", on_missing_doc="skip_query").stats
    assert st2.skipped_query_ids["doc_missing_from_corpus"] == ["q7"]
    assert st2.docs_missing_from_corpus == 0


def test_padding_allows_short_groups(data):
    b = build(data, strategy="top", pad=True)
    assert "q5" in b.query_ids and b.stats.n_short_groups == 1
    short = by_qid(b)["q5"]
    assert short.doc_ids == ("e0", "e1", "e2")
    batch = collate_groups([by_qid(b)["q1"], short])
    assert batch.mask.tolist() == [[True] * 4, [True, True, True, False]]
    assert batch.doc_ids[1][3] == "" and batch.targets[1, 3].item() == 0.0
    # the padded batch goes straight into a loss
    scores = torch.randn(2, 4, requires_grad=True)
    RankNet()(scores, batch.targets, batch.mask).backward()
    assert scores.grad[1, 3].item() == 0.0


def test_flat_pairs_roundtrip(data):
    b = build(data, strategy="top", pad=True)
    batch = collate_groups([by_qid(b)["q5"], by_qid(b)["q1"]])
    qs, ds = batch.flat_pairs()
    assert len(qs) == 7 and qs[:3] == ["query q5"] * 3 and ds[3] == "text of a0"
    flat = torch.arange(7, dtype=torch.float32)
    grid = batch.unflatten(flat, fill=-1.0)
    assert grid.tolist() == [[0, 1, 2, -1], [3, 4, 5, 6]]
    with pytest.raises(ConfigError):
        batch.unflatten(torch.zeros(8))


def test_config_errors(data):
    queries, docs, run, qrels = data
    with pytest.raises(ConfigError, match="n_docs"):
        build(data, n_docs=1)
    with pytest.raises(ConfigError, match="strategy"):
        build(data, strategy="hardest")
    with pytest.raises(ConfigError, match="binary_rel"):
        build(data, binary_rel=0)
    with pytest.raises(ConfigError, match="on_missing_doc"):
        build(data, on_missing_doc="ignore")
    with pytest.raises(ConfigError, match="depth"):
        build(data, depth=0)
    with pytest.raises(ConfigError, match="strategy"):
        TeacherGroupBuilder(queries, docs, run, strategy="random")
    with pytest.raises(ConfigError, match="targets"):
        TeacherGroupBuilder(queries, docs, run, targets="label")
    with pytest.raises(ConfigError, match="ties"):
        TeacherGroupBuilder(queries, docs, run, ties="dense")


# ---------------------------------------------------------------------------------------------
# determinism


def test_deterministic_under_seed(data):
    for strategy in QrelsGroupBuilder.STRATEGIES:
        a = build(data, strategy=strategy, seed=7)
        b = build(data, strategy=strategy, seed=7)
        for epoch in (0, 1):
            assert list(a.iter_groups(epoch)) == list(b.iter_groups(epoch))
    a, c = build(data, strategy="random", seed=7), build(data, strategy="random", seed=8)
    assert any(a.groups(e) != c.groups(e) for e in range(5))
    assert a.epoch_order(0) != a.epoch_order(1) or a.epoch_order(1) != a.epoch_order(2)
    assert a.epoch_order(0, shuffle=False) == list(range(len(a)))


# ---------------------------------------------------------------------------------------------
# teacher runs


@pytest.fixture()
def teacher():
    order = {"t1": ids("a", 10), "t2": ["b0", "nodoc"] + ids("b", 10)[1:]}
    run = Run({q: Ranking.from_order(q, d, "teacher") for q, d in order.items()}, "teacher")
    # t3 has real scores (teacher logits) to test score targets
    run.add(Ranking.from_scores("t3", {"c0": 4.5, "c1": -1.25, "c2": 0.5, "c3": 2.0}, "teacher"))
    queries = {q: Query(q, q) for q in ("t1", "t2", "t3")}
    docs = {d: Doc(d, d) for r in run.values() for d in r.doc_ids if d != "nodoc"}
    return queries, docs, run


def test_teacher_rank_targets(teacher):
    queries, docs, run = teacher
    b = TeacherGroupBuilder(queries, docs, run, n_docs=4, depth=10)
    g = {x.query_id: x for x in b.groups()}
    assert g["t1"].doc_ids == ("a0", "a1", "a2", "a3")
    assert g["t1"].targets == (10.0, 9.0, 8.0, 7.0)  # depth - rank + 1
    # "nodoc" (rank 2) has no text: left out, the others keep the teacher's ranks
    assert g["t2"].doc_ids == ("b0", "b1", "b2", "b3")
    assert g["t2"].targets == (10.0, 8.0, 7.0, 6.0)
    assert b.stats.docs_missing_from_corpus == 1
    # t3's ranking: c0 (4.5), c3 (2.0), c2 (0.5), c1 (-1.25)
    assert g["t3"].doc_ids == ("c0", "c3", "c2", "c1")
    assert g["t3"].targets == (10.0, 9.0, 8.0, 7.0)
    # depth=None: the longest teacher ranking (11) sets the scale
    b2 = TeacherGroupBuilder(queries, docs, run, n_docs=4)
    assert b2.target_depth == 11 and b2.group(0).targets[0] == 11.0


def test_teacher_ties_ordinal_or_competition():
    # d1 and d2 are duplicates the teacher scored equally
    run = Run({"q": Ranking.from_scores("q", {"d0": 3.0, "d1": 2.0, "d2": 2.0, "d3": 1.0},
                                        "teacher")}, "teacher")
    queries, docs = {"q": Query("q", "q")}, {d: Doc(d, d) for d in ("d0", "d1", "d2", "d3")}
    ordinal = TeacherGroupBuilder(queries, docs, run, n_docs=4, depth=4).group(0)
    assert ordinal.targets == (4.0, 3.0, 2.0, 1.0)  # the run's positions: d1 above d2
    comp = TeacherGroupBuilder(queries, docs, run, n_docs=4, depth=4, ties="competition").group(0)
    assert comp.doc_ids == ordinal.doc_ids
    assert comp.targets == (4.0, 3.0, 3.0, 1.0)  # "1224": the tie shares its best position
    # RankNet skips the tied pair: with scores that order d2 above d1, the competition loss
    # is the loss of the other 5 pairs only
    loss = RankNet()
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    t = torch.tensor([comp.targets])
    pairs = [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    expected = sum(torch.nn.functional.softplus(-(scores[0, i] - scores[0, j]))
                   for i, j in pairs) / len(pairs)
    assert torch.isclose(loss(scores, t, mask), expected)
    assert loss(scores, torch.tensor([ordinal.targets]), mask) > expected  # d1 > d2 is taught


def test_teacher_score_targets_and_sampling(teacher):
    queries, docs, run = teacher
    b = TeacherGroupBuilder(queries, docs, run, n_docs=4, targets="score")
    g = {x.query_id: x for x in b.groups()}["t3"]
    assert g.targets == (4.5, 2.0, 0.5, -1.25)
    b = TeacherGroupBuilder(queries, docs, run, n_docs=4, strategy="top_and_random", depth=8)
    tails = set()
    for epoch in range(10):
        grp = b.group(b.query_ids.index("t1"), epoch)
        assert grp.doc_ids[:2] == ("a0", "a1")
        assert set(grp.doc_ids[2:]) <= {f"a{i}" for i in range(2, 8)}  # within depth
        assert list(grp.targets) == [8.0 - int(d[1:]) for d in grp.doc_ids]  # 8 - rank + 1
        tails.add(grp.doc_ids[2:])
    assert len(tails) > 2
    # t3 has only 4 documents; n_docs=5 without padding -> counted as too few
    b5 = TeacherGroupBuilder(queries, docs, run, n_docs=5)
    assert b5.stats.skipped_query_ids == {"too_few_candidates": ["t3"]}
    q_missing = {k: v for k, v in queries.items() if k != "t2"}
    assert TeacherGroupBuilder(q_missing, docs, run, n_docs=4).stats.skipped == \
        {"missing_query_text": 1}


# ---------------------------------------------------------------------------------------------
# resuming without duplicates


def test_resume_offset_gives_no_duplicates(data):
    b = build(data, strategy="random", seed=3)
    full = list(b.iter_groups(epoch=2))
    k = 3
    first = full[:k]  # consumed before the interruption
    resumed = list(b.iter_groups(epoch=2, start=k))
    assert resumed == full[k:]
    seen = [g.query_id for g in first + resumed]
    assert len(seen) == len(set(seen)) == len(b)


def test_sampler_dataloader_resume(data):
    b = build(data, strategy="top_and_random", seed=5)
    ds = GroupDataset(b)
    sampler = GroupSampler(b)
    sampler.set_epoch(1)

    def loader(s):
        return torch.utils.data.DataLoader(ds, sampler=s, batch_size=1,
                                           collate_fn=collate_groups)

    full = [batch.query_ids[0] for batch in loader(sampler)]
    assert full == [b.query_ids[i] for i in b.epoch_order(1)]
    # interrupted after 2 groups: save the state, restore into a fresh sampler
    sampler.set_start(2)
    state = sampler.state_dict()
    fresh = GroupSampler(b)
    fresh.load_state_dict(state)
    assert len(fresh) == len(b) - 2
    rest = [batch for batch in loader(fresh)]
    assert [x.query_ids[0] for x in rest] == full[2:]
    # the resumed groups are the very groups of epoch 1 (same sampled documents)
    assert tuple(rest[0].doc_ids[0]) == list(b.iter_groups(epoch=1, start=2))[0].doc_ids
    # a new epoch starts from 0 again
    fresh.set_epoch(2)
    assert len(list(fresh)) == len(b)
    assert ds[(1, 0)] == b.group(0, 1) and ds[0] == b.group(0, 0)


def test_fit_config_takes_ties_for_teacher_runs_only(tmp_path):
    from rankstack.cli.fit import build_groups, resolve
    from rankstack.io import write_run

    cfg = tmp_path / "fit.yaml"
    cfg.write_text("out_dir: m\ndata:\n  teacher_run: t.txt\n  ties: competition\n")
    assert resolve([str(cfg)], [])["data"]["ties"] == "competition"
    with pytest.raises(ConfigError, match="ties"):
        resolve([str(cfg)], ["data.ties=dense"])
    write_run(Run.from_dict({"q": {"d": 1.0}}), tmp_path / "c.txt")
    with pytest.raises(ConfigError, match="data.ties"):
        build_groups({"qrels": "dl19", "candidates": str(tmp_path / "c.txt"),
                      "ties": "competition"}, 4, 0)
