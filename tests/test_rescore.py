"""``flagstream rescore``: formats in and out, error rows, the post contract, resume that proves what it skips,
shards == one run, and one-line errors (never a traceback) for any input file."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flagstream.classifier.inference.linear import LinearModel
from flagstream.classifier.archive.rescore import RescoreError, parse_shard, rescore_file, run_record_path
from flagstream.classifier.archive.files import JsonlOutput
from flagstream.classifier.inference.scoring import flagged_labels, load_scorer
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


def _cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(["rescore", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines()


def _strict_json(line: str | bytes) -> dict:
    """Standard JSON only: NaN/Infinity literals fail."""
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


# --- formats ---------------------------------------------------------------------------------------------

def test_jsonl_to_jsonl_matches_scorer(tmp_path, model_dir, capsys):
    posts = _posts()
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    out = tmp_path / "out.jsonl"
    code, stdout, _ = _cli(capsys, src, "--output", out, "--model", model_dir)
    assert code == 0
    rows = _read_out(out)
    assert [r["id"] for r in rows] == [p["id"] for p in posts]
    assert [r["row"] for r in rows] == list(range(len(posts)))
    scorer = load_scorer(model_dir)
    probs = scorer.score([p["text"] for p in posts])
    for r, p, post in zip(rows, probs, posts):
        assert r["model"] == "test-linear@0.1"
        assert r["scores"] == pytest.approx({"propaganda": float(p[0]), "sectarian": float(p[1])}, abs=1e-6)
        assert r["labels"] == flagged_labels(p, scorer.info)
        assert r["lang"] == "en" and r["extra"] == {"n": post["n"]} and "text" not in r and "error" not in r
    flagged = sum(bool(r["labels"]) for r in rows)
    assert 0 < flagged < len(rows)
    assert f"rescored {len(posts)} rows" in stdout and "errors: 0" in stdout


def test_error_rows_never_crash(tmp_path, model_dir):
    posts = _posts(6)
    lines = ("not json at all", "[1, 2]", json.dumps({"id": "blank", "text": "   "}),
             json.dumps({"id": "nontext", "text": 42}), json.dumps({"id": "notext"}),
             json.dumps({"id": "long", "text": "x" * 500}), json.dumps({"id": 7, "text": "an int id"}),
             json.dumps({"text": "no id"}), json.dumps({"id": "", "text": "empty id"}))
    src = _write_jsonl(tmp_path / "in.jsonl", posts, lines)
    out = tmp_path / "out.jsonl"
    summary = rescore_file(load_scorer(model_dir), src, out, max_text_chars=400)
    rows = _read_out(out)
    assert len(rows) == len(posts) + len(lines)
    errors = [r.get("error") for r in rows[len(posts):]]
    assert errors == ["not_json", "not_object", "invalid_text", "invalid_text", "missing_text", "text_too_long",
                      "invalid_id", "missing_id", "invalid_id"]
    assert all("scores" not in r and r["reason"] and "\n" not in r["reason"] for r in rows[len(posts):])
    assert [r["id"] for r in rows[len(posts):]] == [None, None, "blank", "nontext", "notext", "long", None, None, None]
    assert summary.errors == len(lines) and summary.scored == len(posts)
    assert summary.error_classes == {"not_json": 1, "not_object": 1, "invalid_text": 2, "missing_text": 1,
                                     "text_too_long": 1, "invalid_id": 2, "missing_id": 1}


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
    # Passthrough fields are nested under extra: a JSON object in JSONL, its JSON text in Parquet.
    assert pqj_rows[5]["extra"] == {"n": 5} and json.loads(pq_rows[5]["extra"]) == {"n": 5}
    assert csv_rows[5]["extra"] == {"n": "5"} and pq_rows[5]["lang"] == "en"
    assert pq_rows[0]["scores"] == pytest.approx(pqj_rows[0]["scores"], abs=1e-6)
    assert pq_rows[0]["labels"] == pqj_rows[0]["labels"] and pq_rows[0]["model"] == "test-linear@0.1"
    schema = pq.read_schema(tmp_path / "pq.parquet")
    assert schema.field("scores").type == pa.struct([("propaganda", pa.float64()), ("sectarian", pa.float64())])
    assert not (tmp_path / "pq.parquet.parts").exists()


# --- the post contract: the stream's rules, no forgery, standard JSON -----------------------------------

def test_forged_verdict_fields_are_nested_never_beside_the_models(tmp_path, model_dir):
    forged = {"id": "f1", "text": BENIGN, "labels": ["propaganda"], "scores": {"propaganda": 1.0},
              "error": "none", "model": "fake@1", "reason": "trust me", "row": 99, "extra": "x"}
    src = _write_jsonl(tmp_path / "in.jsonl", [forged])
    for out in (tmp_path / "o.jsonl", tmp_path / "o.parquet"):
        rescore_file(load_scorer(model_dir), src, out)
        (row,) = _read_out(out)
        extra = row["extra"] if isinstance(row["extra"], dict) else json.loads(row["extra"])
        assert row["model"] == "test-linear@0.1" and row["row"] == 0 and row["labels"] == []
        assert row["scores"]["propaganda"] < 0.5 and row.get("error") is None and row.get("reason") is None
        assert extra == {k: v for k, v in forged.items() if k not in ("id", "text")}


def test_stream_rules_apply_to_jsonl_lines(tmp_path, model_dir):
    """The rows the old rescore scored or crashed on: each gets the stream's error class."""
    deep = b'{"id":"deep","text":"t","meta":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    lines = [
        b'{"id":"u8","text":"caf\xe9 ' + BENIGN.encode() + b'"}',  # Latin-1 byte: not UTF-8
        deep,
        b'{"id":"inf","text":"' + BENIGN.encode() + b'","meta":{"v":1e400}}',
        b'{"id":"nan","text":"' + BENIGN.encode() + b'","x":NaN}',
        b'{"id":"big","text":"' + b"y" * 1_100_000 + b'"}',
        b'{"id":"sur","text":"\\ud800 lone"}',
        b'{"id":"ok","text":"' + BENIGN.encode() + b'","meta":{"v":1e300}}',
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    summary = rescore_file(load_scorer(model_dir), src, out)
    raw = out.read_bytes().splitlines()
    rows = [_strict_json(line) for line in raw]
    assert [r.get("error") for r in rows] == ["not_utf8", "not_json", "not_json", "not_json", "message_too_large",
                                              "invalid_text", None]
    assert rows[-1]["meta"] == {"v": 1e300} and summary.scored == 1


def test_non_finite_scores_are_scoring_failed_and_output_is_standard_json(tmp_path, model_dir):
    real = load_scorer(model_dir)

    class PoisonScorer:
        """The real model, except that it returns NaN/inf for texts containing 'poison' (a fault)."""

        info = real.info

        def score(self, texts):
            probs = np.asarray(real.score(texts), dtype=np.float64)
            for i, t in enumerate(texts):
                if "poison" in t:
                    probs[i] = [np.nan, np.inf]
            return probs

    posts = [{"id": "a", "text": BENIGN}, {"id": "b", "text": "poison " + BENIGN}, {"id": "c", "text": BAD}]
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    for out in (tmp_path / "o.jsonl", tmp_path / "o.parquet"):
        summary = rescore_file(PoisonScorer(), src, out)
        rows = _read_out(out)
        assert [r.get("error") for r in rows] == [None, "scoring_failed", None]
        assert summary.scored == 2 and summary.errors == 1
    for line in (tmp_path / "o.jsonl").read_text().splitlines():
        _strict_json(line)


def test_csv_invalid_utf8_and_nan_cells(tmp_path, model_dir):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text,n\nc1," + BENIGN.encode() + b",1\nc2,caf\xe9 bad bytes,2\nc3," + BAD.encode()
                     + b",3\n")
    rescore_file(load_scorer(model_dir), path, tmp_path / "o.jsonl")
    rows = _read_out(tmp_path / "o.jsonl")
    assert [r.get("error") for r in rows] == [None, "not_utf8", None] and rows[1]["id"] is None
    # Parquet NaN (how tables write "missing") is read as null, never written as NaN.
    pq.write_table(pa.Table.from_pylist([{"id": "q1", "text": BENIGN, "likes": float("nan"), "lang": None}]),
                   tmp_path / "in.parquet")
    rescore_file(load_scorer(model_dir), tmp_path / "in.parquet", tmp_path / "q.jsonl")
    (row,) = [_strict_json(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert row["extra"] == {"likes": None} and "error" not in row


def test_parquet_output_survives_type_clashes_and_late_columns(tmp_path, model_dir):
    posts = _posts(12)
    posts[0]["labels"] = 5
    posts[5]["labels"] = ["x", {"y": 1}]
    posts[9]["late"] = {"first": "seen in the last block"}
    posts[10]["n"] = "a string now"
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    out = tmp_path / "o.parquet"
    rescore_file(load_scorer(model_dir), src, out, block_rows=4)
    rows = _read_out(out)
    assert len(rows) == 12 and all(r["error"] is None for r in rows)
    assert json.loads(rows[0]["extra"])["labels"] == 5 and json.loads(rows[5]["extra"])["labels"] == ["x", {"y": 1}]
    assert json.loads(rows[9]["extra"])["late"] == {"first": "seen in the last block"}
    assert json.loads(rows[10]["extra"])["n"] == "a string now"
    assert all(isinstance(r["labels"], list) for r in rows)


# --- one-line errors, checked before the model loads; exit codes -------------------------------------------

def test_usage_errors_are_one_line_and_come_before_the_model(tmp_path, model_dir, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(3))
    no_text = tmp_path / "notext.csv"
    no_text.write_text("id,body\n1,hello\n2,world\n3,again\n", encoding="utf-8")
    (tmp_path / "adir.jsonl").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    no_model = tmp_path / "no-such-model"  # a model error would mean the model was opened first
    cases = [
        ([src, "--output", tmp_path / "o.txt"], "unknown file type"),
        ([tmp_path / "missing.jsonl", "--output", tmp_path / "o.jsonl"], "does not exist"),
        ([src, "--output", tmp_path / "o.jsonl", "--shard", "4/3"], "--shard"),
        ([no_text, "--output", tmp_path / "o.jsonl"], "no 'text' column"),
        ([src, "--output", tmp_path / "adir.jsonl"], "is a directory"),
        ([src, "--output", src], "must differ"),
    ]
    import os

    if os.geteuid() != 0:  # root can write anywhere
        cases.append(([src, "--output", locked / "o.jsonl"], "cannot create files"))
    for args, expect in cases:
        code, _, err = _cli(capsys, *args, "--model", no_model)
        assert code == 2, (args, err)
        assert len(err) == 1 and err[0].startswith("flagstream rescore: error:") and expect in err[0], err
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(RescoreError):
        parse_shard("0/2")


def test_every_row_failed_exits_non_zero(tmp_path, model_dir, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"not json\n\xff\xfe\n" + json.dumps({"id": "x", "text": " "}).encode() + b"\n")
    code, stdout, err = _cli(capsys, src, "--output", tmp_path / "o.jsonl", "--model", model_dir)
    assert code == 1 and "errors: 3" in stdout
    assert len(err) == 1 and "every one of the 3 rows failed" in err[0]
    assert [r["error"] for r in _read_out(tmp_path / "o.jsonl")] == ["not_json", "not_utf8", "invalid_text"]


@pytest.mark.parametrize("name,content", [
    ("garbage.parquet", b"PAR1 this is not parquet"),
    ("empty.parquet", b""),
    ("torn.jsonl.gz", (lambda z: z[: len(z) // 2])(gzip.compress(b"".join(
        b'{"id":"a%d","text":"hello there %d"}\n' % (i, i * 7919) for i in range(5000))))),
    ("notgzip.jsonl.gz", b"plain bytes, not gzip"),
    ("bin.csv", bytes(range(256)) * 40),
    ("bin.jsonl", bytes(range(256)) * 40),
])
def test_no_input_file_causes_a_traceback(tmp_path, model_dir, capsys, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = _cli(capsys, path, "--output", tmp_path / "o.jsonl", "--model", model_dir)
    assert code in (1, 2) and len(err) == 1 and err[0].startswith("flagstream rescore: error:"), err


def test_a_truncated_archive_keeps_every_readable_row(tmp_path, model_dir, capsys):
    lines = b"".join(b'{"id":"a%d","text":"hello there %d"}\n' % (i, i * 7919) for i in range(5000))
    z = gzip.compress(lines)
    path = tmp_path / "torn.jsonl.gz"
    path.write_bytes(z[: len(z) // 2])
    code, _, err = _cli(capsys, path, "--output", tmp_path / "o.jsonl", "--model", model_dir, "--block-rows", "100000")
    assert code == 2 and len(err) == 1 and "EOFError" in err[0]
    rows = _read_out(tmp_path / "o.jsonl")
    assert 1000 < len(rows) < 5000 and [r["id"] for r in rows] == [f"a{i}" for i in range(len(rows))]


# --- resume: proves what it skips ---------------------------------------------------------------------------

def test_resume_after_torn_jsonl(tmp_path, model_dir):
    posts = _posts(50)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    out = tmp_path / "out.jsonl"
    rescore_file(scorer, src, out, block_rows=8)
    expected = out.read_bytes()
    record = json.loads(run_record_path(out).read_text())
    assert record["input"]["size"] == src.stat().st_size and record["model"] == "test-linear@0.1"
    assert record["shard"] is None and record["output_format"] == "jsonl"
    # Simulate a crash: the first 17 lines plus half of the 18th.
    lines = expected.split(b"\n")
    out.write_bytes(b"\n".join(lines[:17]) + b"\n" + lines[17][:25])
    summary = rescore_file(scorer, src, out, resume=True, block_rows=8)
    assert summary.resumed_from == 17 and summary.rows == 33
    assert out.read_bytes() == expected
    # Resuming a finished run does nothing and changes nothing.
    again = rescore_file(scorer, src, out, resume=True)
    assert again.rows == 0 and out.read_bytes() == expected


def test_resume_redoes_from_a_corrupt_line_in_the_middle(tmp_path, model_dir):
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(30))
    scorer = load_scorer(model_dir)
    out = tmp_path / "out.jsonl"
    rescore_file(scorer, src, out)
    expected = out.read_bytes()
    lines = expected.split(b"\n")
    lines[9] = b"#" * len(lines[9])  # a damaged line 10 of 30, complete lines after it
    out.write_bytes(b"\n".join(lines))
    summary = rescore_file(scorer, src, out, resume=True)
    assert summary.resumed_from == 9 and summary.rows == 21
    assert out.read_bytes() == expected


def test_resume_parquet_after_crash(tmp_path, model_dir, monkeypatch):
    import flagstream.classifier.archive.files as rescore_io

    monkeypatch.setattr(rescore_io, "PART_ROWS", 10)
    posts = _posts(45)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    rescore_file(scorer, src, tmp_path / "full.parquet", block_rows=4)

    class Crash(BaseException):
        """Stands for the process dying (not an error the run handles)."""

    calls = {"n": 0}
    real = scorer.score

    def crashing(texts):
        calls["n"] += 1
        if calls["n"] == 7:  # after 24 rows: two complete parts of 10, four rows buffered and lost
            raise Crash()
        return real(texts)

    monkeypatch.setattr(scorer, "score", crashing)
    out = tmp_path / "part.parquet"
    with pytest.raises(Crash):
        rescore_file(scorer, src, out, block_rows=4)
    parts = tmp_path / "part.parquet.parts"
    assert not out.exists() and len(list(parts.glob("*.parquet"))) == 2
    # A torn part in the middle: it and every part after it are redone, not counted.
    (parts / "part-000001.parquet").write_bytes(b"PAR1 torn")
    monkeypatch.setattr(scorer, "score", real)
    summary = rescore_file(scorer, src, out, resume=True, block_rows=4)
    assert summary.resumed_from == 10 and summary.rows == 35
    assert _read_out(out) == _read_out(tmp_path / "full.parquet")


def test_resume_refuses_another_run(tmp_path, model_dir, capsys):
    posts = _posts(9)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    out = tmp_path / "s.jsonl"
    assert _cli(capsys, src, "--output", out, "--model", model_dir, "--shard", "1/2")[0] == 0
    before = out.read_bytes()
    # the case: resuming a --shard 1/2 output without --shard
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume")
    assert code == 2 and len(err) == 1 and "--shard 1/2" in err[0] and "no --shard" in err[0]
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume", "--shard", "2/2")
    assert code == 2 and "--shard 2/2" in err[0]
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume", "--shard", "1/2",
                        "--max-text-chars", "100")
    assert code == 2 and "max_text_chars" in err[0]
    # a changed input (appended to, or edited in place)
    _write_jsonl(src, posts + [{"id": "new", "text": BENIGN}])
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume", "--shard", "1/2")
    assert code == 2 and "input" in err[0]
    # another model
    _write_jsonl(src, posts)
    record = json.loads(run_record_path(out).read_text())
    run_record_path(out).write_text(json.dumps({**record, "model": "other@9"}))
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume", "--shard", "1/2")
    assert code == 2 and "other@9" in err[0] and "test-linear@0.1" in err[0]
    # no run record at all
    run_record_path(out).unlink()
    code, _, err = _cli(capsys, src, "--output", out, "--model", model_dir, "--resume", "--shard", "1/2")
    assert code == 2 and "no run record" in err[0]
    assert out.read_bytes() == before  # a refused resume touches nothing


def test_resume_checks_recovered_ids_against_the_input(tmp_path, model_dir):
    posts = _posts(12)
    src = _write_jsonl(tmp_path / "in.jsonl", posts)
    scorer = load_scorer(model_dir)
    out = tmp_path / "o.jsonl"
    rescore_file(scorer, src, out)
    lines = out.read_bytes().split(b"\n")
    # Same input bytes, but the output's rows 3..4 swapped and cut after 6 rows: row numbers disagree.
    lines[3], lines[4] = lines[4], lines[3]
    out.write_bytes(b"\n".join(lines[:6]) + b"\n")
    with pytest.raises(RescoreError, match="output row 4 .* input row 4"):
        rescore_file(scorer, src, out, resume=True)
    # Right row numbers, wrong id.
    row = json.loads(lines[4])
    lines[3] = json.dumps({**row, "row": 3}).encode()
    lines[4] = json.dumps({**json.loads(lines[3]), "row": 4, "id": "p3"}).encode()
    out.write_bytes(b"\n".join(lines[:6]) + b"\n")
    with pytest.raises(RescoreError, match="post id differs"):
        rescore_file(scorer, src, out, resume=True)


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
    union = sorted((r for s in shards for r in s), key=lambda r: r["row"])
    assert union == _read_out(single)
    assert {r["id"] for r in shards[0]} == {f"p{i}" for i in range(0, 37, 3)}


def test_jsonl_output_recovery_counts_complete_output_rows(tmp_path):
    out = tmp_path / "o.jsonl"
    good = [json.dumps({"id": f"p{i}", "row": i, "model": "m@1", "scores": {}, "labels": []}) for i in range(2)]
    out.write_bytes(("\n".join(good) + "\n").encode() + b'{"id": "p2", "ro')
    assert JsonlOutput(out, resume=True).done == 2
    assert out.read_bytes() == ("\n".join(good) + "\n").encode()
    out.write_bytes(("\n".join([good[0], '{"a": 1}', good[1]]) + "\n").encode())  # not an output row
    assert JsonlOutput(out, resume=True).done == 1


def test_an_existing_output_is_refused_unless_overwrite(tmp_path, model_dir):
    """Issue 29: a reused --output path never silently replaces earlier results."""
    src = _write_jsonl(tmp_path / "in.jsonl", _posts(10))
    out = tmp_path / "scores.jsonl"
    out.write_text('{"keep": "me"}\n', encoding="utf-8")
    res = subprocess_rescore([str(src), "--output", str(out), "--model", str(model_dir)])
    assert res.returncode == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert out.read_text(encoding="utf-8") == '{"keep": "me"}\n'
    res = subprocess_rescore([str(src), "--output", str(out), "--model", str(model_dir), "--overwrite"])
    assert res.returncode == 0, res.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 10
    res = subprocess_rescore([str(src), "--output", str(out), "--model", str(model_dir), "--overwrite", "--resume"])
    assert res.returncode == 2 and "pass one of them" in res.stderr


def subprocess_rescore(args: list[str]):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "flagstream.cli", "rescore", *args], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
