"""``flagstream rescore``: formats in and out, error rows, resume after a crash, shards == one run."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifier.linear import LinearModel
from classifier.rescore import JsonlOutput, RescoreError, parse_shard, rescore_file
from classifier.scoring import flagged_labels, load_scorer
from flagstream.cli import main

BAD = "join the fighters martyrdom operation glory to the army of the caliphate kill the enemies"
HATE = "those people of that sect are vermin and must be driven out of our land"
BENIGN = "the market opens at nine and the weather is fine for a walk by the river today"


def _corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    texts, y = [], []
    for i in range(n):
        kind = i % 3
        base = (BAD, HATE, BENIGN)[kind].split()
        rng.shuffle(base)
        texts.append(" ".join(base[: rng.randint(5, len(base))]) + f" {rng.choice(['now', 'today', 'again', 'ok'])}")
        y.append([kind == 0, kind == 1])
    return texts, np.array(y, dtype=np.float64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    texts, y = _corpus(300)
    root = tmp_path_factory.mktemp("model") / "linear"
    LinearModel.fit(texts, y).save(root, "test-linear", "0.1", {"propaganda": 0.5, "sectarian": 0.5})
    return root


def _posts(n: int = 40, seed: int = 1) -> list[dict]:
    texts, _ = _corpus(n, seed)
    return [{"id": f"p{i}", "text": t, "lang": "en", "n": i} for i, t in enumerate(texts)]


def _write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path


def _read_out(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_to_jsonl_matches_scorer(tmp_path, model_dir, capsys):
    posts = _posts()
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    out = tmp_path / "out.jsonl"
    assert main(["rescore", str(src), "--output", str(out), "--model", str(model_dir)]) == 0
    rows = _read_out(out)
    assert [r["id"] for r in rows] == [p["id"] for p in posts]
    scorer = load_scorer(model_dir)
    probs = scorer.score([p["text"] for p in posts])
    for r, p, post in zip(rows, probs, posts):
        assert r["model"] == "test-linear@0.1"
        assert r["scores"] == pytest.approx({"propaganda": float(p[0]), "sectarian": float(p[1])}, abs=1e-6)
        assert r["labels"] == flagged_labels(p, scorer.info)
        assert r["lang"] == "en" and r["n"] == post["n"] and "text" not in r and "error" not in r
    flagged = sum(bool(r["labels"]) for r in rows)
    assert 0 < flagged < len(rows)
    summary = capsys.readouterr().out
    assert f"rescored {len(posts)} rows" in summary and "errors: 0" in summary


def test_error_rows_never_crash(tmp_path, model_dir):
    posts = _posts(6)
    lines = ("not json at all", "[1, 2]", json.dumps({"id": "blank", "text": "   "}),
             json.dumps({"id": "nontext", "text": 42}), json.dumps({"id": "notext"}),
             json.dumps({"id": "long", "text": "x" * 500}))
    src = _write_jsonl(tmp_path / "in.jsonl", posts, lines)
    out = tmp_path / "out.jsonl"
    scorer = load_scorer(model_dir)
    summary = rescore_file(scorer, src, out, max_text_chars=400)
    rows = _read_out(out)
    assert len(rows) == len(posts) + len(lines)
    errors = [r.get("error") for r in rows[len(posts):]]
    assert errors == ["not_json", "not_object", "invalid_text", "invalid_text", "missing_text", "text_too_long"]
    assert all("scores" not in r for r in rows[len(posts):])
    assert [r["id"] for r in rows[len(posts) + 2:]] == ["blank", "nontext", "notext", "long"]
    assert summary.errors == len(lines) and summary.scored == len(posts)


def test_csv_and_parquet_inputs_and_parquet_output(tmp_path, model_dir):
    posts = _posts(30)
    posts[3]["text"] = ""  # an error row in every format
    csv_path = tmp_path / "in.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "lang", "n"])
        w.writeheader()
        for p in posts:
            w.writerow({**p, "text": p["text"].replace(" now", " now,\n\"quoted\"")})  # commas, quotes, newlines
    pq_path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(posts), pq_path, row_group_size=7)
    scorer = load_scorer(model_dir)

    rescore_file(scorer, csv_path, tmp_path / "csv.jsonl")
    rescore_file(scorer, pq_path, tmp_path / "pq.parquet")
    rescore_file(scorer, pq_path, tmp_path / "pq.jsonl", keep_text=True)
    csv_rows = _read_out(tmp_path / "csv.jsonl")
    pq_rows = _read_out(tmp_path / "pq.parquet")
    pqj_rows = _read_out(tmp_path / "pq.jsonl")
    for rows in (csv_rows, pq_rows, pqj_rows):
        assert [r["id"] for r in rows] == [p["id"] for p in posts]
        assert rows[3]["error"] == "invalid_text" and not rows[3].get("scores")
    assert pqj_rows[0]["text"] == posts[0]["text"]
    # Parquet keeps the input's column types; CSV values arrive as strings.
    assert pq_rows[5]["n"] == 5 and csv_rows[5]["n"] == "5"
    assert pq_rows[0]["scores"] == pytest.approx(pqj_rows[0]["scores"], abs=1e-6)
    assert pq_rows[0]["labels"] == pqj_rows[0]["labels"] and pq_rows[0]["model"] == "test-linear@0.1"
    schema = pq.read_schema(tmp_path / "pq.parquet")
    assert schema.field("scores").type == pa.struct([("propaganda", pa.float64()), ("sectarian", pa.float64())])
    assert not (tmp_path / "pq.parquet.parts").exists()


def test_resume_after_torn_jsonl(tmp_path, model_dir):
    posts = _posts(50)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    full = tmp_path / "full.jsonl"
    rescore_file(scorer, src, full, block_rows=8)
    expected = full.read_bytes()
    # Simulate a crash: the first 17 lines plus half of the 18th.
    lines = expected.split(b"\n")
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b"\n".join(lines[:17]) + b"\n" + lines[17][:25])
    summary = rescore_file(scorer, src, torn, resume=True, block_rows=8)
    assert summary.resumed_from == 17 and summary.rows == 33
    assert torn.read_bytes() == expected
    # Resuming a finished run does nothing and changes nothing.
    again = rescore_file(scorer, src, torn, resume=True)
    assert again.rows == 0 and torn.read_bytes() == expected


def test_resume_parquet_after_crash(tmp_path, model_dir, monkeypatch):
    import classifier.rescore as rescore_mod

    monkeypatch.setattr(rescore_mod, "PART_ROWS", 10)
    posts = _posts(45)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    rescore_file(scorer, src, tmp_path / "full.parquet", block_rows=4)

    class Boom(Exception):
        pass

    calls = {"n": 0}
    real = scorer.score

    def crashing(texts):
        calls["n"] += 1
        if calls["n"] == 7:  # after 24 rows: two complete parts of 10, four rows buffered and lost
            raise Boom()
        return real(texts)

    monkeypatch.setattr(scorer, "score", crashing)
    monkeypatch.setattr(rescore_mod, "_score_block", lambda s, t: (s.score(t), [True] * len(t)))
    out = tmp_path / "part.parquet"
    with pytest.raises(Boom):
        rescore_file(scorer, src, out, block_rows=4)
    assert not out.exists() and len(list((tmp_path / "part.parquet.parts").glob("*.parquet"))) == 2
    (tmp_path / "part.parquet.parts" / "part-000002.parquet").write_bytes(b"PAR1 torn")  # a half-written part
    monkeypatch.setattr(scorer, "score", real)
    summary = rescore_file(scorer, src, out, resume=True, block_rows=4)
    assert summary.resumed_from == 20 and summary.rows == 25
    assert _read_out(out) == _read_out(tmp_path / "full.parquet")


def test_resume_refuses_a_different_model(tmp_path, model_dir):
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(5))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "p0", "model": "other@9"}) + "\n", encoding="utf-8")
    with pytest.raises(RescoreError, match="other@9"):
        rescore_file(load_scorer(model_dir), src, out, resume=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_shards_union_equals_single_run(tmp_path, model_dir, suffix):
    posts = _posts(37)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    single = tmp_path / f"single{suffix}"
    rescore_file(scorer, src, single)
    shards = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}{suffix}"
        assert main(["rescore", str(src), "--output", str(out), "--model", str(model_dir), "--shard", f"{k}/3"]) == 0
        shards.append(_read_out(out))
    assert sorted(len(s) for s in shards) == [12, 12, 13]
    union = sorted((r for s in shards for r in s), key=lambda r: int(r["n"]))  # JSONL extras are strings in Parquet
    assert union == _read_out(single)
    assert {r["id"] for r in shards[0]} == {f"p{i}" for i in range(0, 37, 3)}


def test_user_errors_are_one_line(tmp_path, model_dir, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(3))
    assert main(["rescore", str(src), "--output", str(tmp_path / "o.txt"), "--model", str(model_dir)]) == 2
    assert main(["rescore", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                 "--model", str(model_dir)]) == 2
    assert main(["rescore", str(src), "--output", str(tmp_path / "o.jsonl"), "--model", str(model_dir),
                 "--shard", "4/3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("flagstream rescore: error:") for line in err)
    with pytest.raises(RescoreError):
        parse_shard("0/2")


def test_jsonl_output_recovery_counts_complete_lines(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a"')
    assert JsonlOutput(out, resume=True).done == 2
    assert out.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
