"""Reading, describing and checking a file (the part of the pipeline that needs only the file)."""

import dataclasses
import io

import pandas as pd
import pytest

from datasets.profiling import InputRejected, Limits, check_file, describe_file

LIMITS = Limits(
    max_columns=1000,
    max_line_bytes=1024 * 1024,
    max_decoded_bytes=4 * 1024**3,
    max_decode_ratio=200,
)


def profile(tmp_path, content: bytes, name: str = "data.csv", limits: Limits = LIMITS):
    path = tmp_path / name
    path.write_bytes(content)
    return describe_file(check_file(path, limits=limits), limits=limits)


def rejected(tmp_path, content: bytes) -> InputRejected:
    with pytest.raises(InputRejected) as raised:
        profile(tmp_path, content)
    return raised.value


def warnings_by_code(result) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for warning in result.warnings:
        found.setdefault(warning["code"], []).append(warning)
    return found


def people_csv(rows: int = 60) -> bytes:
    lines = ["customer_id,email,age,country,score,source"]
    for i in range(rows):
        lines.append(f"{1000 + i},person{i}@example.org,{20 + i % 50},{'FR DE NL'.split()[i % 3]},"
                     f"{i * 0.37:.2f},web")  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def test_schema_rows_and_statistics(tmp_path):
    result = profile(tmp_path, people_csv())

    assert result.rows == 60 and result.file_format.kind == "csv"
    columns = {c["name"]: c for c in result.columns}
    assert [c["name"] for c in result.columns] == [
        "customer_id", "email", "age", "country", "score", "source",
    ]  # fmt: skip
    assert columns["age"]["type"] == "integer"
    assert "min" not in columns["age"] and "max" not in columns["age"]  # raw extremes stay private
    assert 20 < columns["age"]["quantiles"]["low"] < columns["age"]["quantiles"]["high"] < 69
    assert columns["score"]["type"] == "float"
    assert (
        columns["score"]["histogram"]["counts"]
        and sum(columns["score"]["histogram"]["counts"]) == 60
    )
    assert columns["country"]["distinct"] == 3
    assert {v["value"] for v in columns["country"]["top_values"]} == {"FR", "DE", "NL"}
    assert columns["email"]["nulls"] == 0


def test_quality_warnings_name_the_columns(tmp_path):
    found = warnings_by_code(profile(tmp_path, people_csv()))

    assert [w["column"] for w in found["identifier_column"]] == ["customer_id"]
    assert {w["column"] for w in found["personal_data"]} == {"email", "age"}
    assert [w["column"] for w in found["constant_column"]] == ["source"]
    assert "duplicate_rows" not in found


def test_personal_data_is_found_by_its_values_too(tmp_path):
    rows = "\n".join(f"{i},contact{i}@mail.example.com" for i in range(30))
    found = warnings_by_code(profile(tmp_path, f"n,reach\n{rows}\n".encode()))

    assert found["personal_data"][0]["column"] == "reach"
    assert "e-mail" in found["personal_data"][0]["message"]


def test_duplicate_rows_are_counted(tmp_path):
    content = b"a,b\n" + b"1,x\n2,y\n" * 5 + b"3,z\n"

    result = profile(tmp_path, content)

    duplicates = warnings_by_code(result)["duplicate_rows"][0]
    assert duplicates["count"] == 8
    assert result.unique_rows == 3


def test_the_same_rows_in_another_order_have_the_same_fingerprint(tmp_path):
    first = profile(tmp_path, b"a,b\n1,x\n2,y\n3,z\n", "one.csv")
    second = profile(tmp_path, b"a,b\n3,z\n1,x\n2,y\n", "two.csv")

    assert first.file_sha256 != second.file_sha256
    assert first.rows_sha256 == second.rows_sha256


def test_formula_cells_are_kept_as_text_and_shown_inert(tmp_path):
    content = b"id,comment\n1,=cmd|' /C calc'!A0\n2,fine\n3,-12\n4,@SUM(A1:A2)\n"

    # Every value shown (groups of one row) to see how each is displayed.
    result = profile(tmp_path, content, limits=dataclasses.replace(LIMITS, min_group_rows=1))

    comment = next(c for c in result.columns if c["name"] == "comment")
    shown = {v["value"] for v in comment["top_values"]}
    assert "'=cmd|' /C calc'!A0" in shown and "'@SUM(A1:A2)" in shown
    assert "-12" in shown  # a negative number is not a formula
    assert comment["formula_cells"] == 2
    assert warnings_by_code(result)["formula_cells"][0]["column"] == "comment"


def test_parquet_files_are_described_too(tmp_path):
    frame = pd.DataFrame({"x": range(100), "kind": pd.Categorical(["a", "b"] * 50)})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)

    result = profile(tmp_path, buffer.getvalue(), "data.parquet")

    assert result.file_format.kind == "parquet" and result.rows == 100
    assert [c["type"] for c in result.columns] == ["integer", "string"]


def test_a_column_whose_type_changes_late_in_the_file_is_widened(tmp_path):
    content = b"n,label\n" + b"1,2\n" * 400_000 + b"2.5,x\n"

    result = profile(tmp_path, content)

    assert [c["type"] for c in result.columns] == ["float", "string"]
    assert result.rows == 400_001


def test_semicolon_separated_files_are_read(tmp_path):
    result = profile(tmp_path, b"a;b;c\n1;2;3\n4;5;6\n")
    assert [c["name"] for c in result.columns] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "content, code, words",
    [
        (b"a,b\n", "no_rows", "header but no rows"),
        (
            b"a,b,c\n1,2,3\n4,5",
            "ragged_rows",
            "The last line (line 3) has 2 fields where the header has 3",
        ),
        (b"a,b\n1,2\n3,4,5\n6,7\n", "ragged_rows", "Line 3 has 3 fields where the header has 2"),
        (b'a,b\n1,"unterminated\n', "unbalanced_quotes", "ends inside a quoted value"),
        ("a,b\n1,café\n".encode("latin-1"), "not_utf8", "byte 9 (line 2) is not valid UTF-8"),
        (b"a,b\n1,2\n\x00\x01\x02", "binary", "NUL byte"),
        (b"a,a\n1,2\n", "duplicate_column_name", "names the column 'a' twice"),
        (b"a,,c\n1,2,3\n", "unnamed_column", "Column 2 has no name"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(tmp_path, content, code, words):
    error = rejected(tmp_path, content)

    assert error.code == code
    assert words in error.message


def test_a_truncated_parquet_file_is_rejected(tmp_path):
    buffer = io.BytesIO()
    pd.DataFrame({"x": range(1000)}).to_parquet(buffer)
    damaged = buffer.getvalue()[:-200] + b"PAR1"

    error = rejected(tmp_path, damaged)

    assert error.code == "bad_parquet"


def test_a_file_with_more_rows_than_are_counted_exactly_keeps_every_row_in_its_minhash(
    tmp_path, monkeypatch
):
    # About 5 MB: the reader hands it over in several batches.
    lines = ["city,visits"] + [f"c{i % 997},{i}" for i in range(400_000)]
    content = ("\n".join(lines) + "\n").encode()
    exact = profile(tmp_path, content)

    from datasets import profiling

    monkeypatch.setattr(profiling, "ROW_HASH_LIMIT", 200_000)  # rows kept for exact counting
    streamed = profile(tmp_path, content)

    assert streamed.minhash == exact.minhash  # the rows beyond the limit and those before it
    assert exact.unique_rows == 400_000
    assert abs(streamed.unique_rows - 400_000) < 400_000 * 0.03  # estimated
    assert streamed.rows_sha256 == ""  # no exact digest without every row hash


def test_a_sketched_count_of_repeated_rows_warns_only_beyond_its_error(tmp_path, monkeypatch):
    from datasets import profiling

    monkeypatch.setattr(profiling, "ROW_HASH_LIMIT", 50_000)  # counted by the sketch beyond this
    distinct = ["id,value"] + [f"{i},{i * 7 % 1000}" for i in range(300_000)]
    result = profile(tmp_path, ("\n".join(distinct) + "\n").encode())

    assert result.rows == 300_000
    assert "duplicate_rows" not in warnings_by_code(result)  # no row repeats: nothing to say
    column = {c["name"]: c for c in result.columns}["id"]
    assert column["distinct_exact"] is False and column["distinct_error_bound"] > 0
    assert abs(column["distinct"] - 300_000) <= column["distinct_error_bound"]

    repeated = distinct + distinct[1:60_001]  # 60,000 rows repeated
    result = profile(tmp_path, ("\n".join(repeated) + "\n").encode())
    (warning,) = warnings_by_code(result)["duplicate_rows"]
    assert warning["estimate"] is True
    assert abs(warning["count"] - 60_000) <= warning["error_bound"] < 60_000
    assert warning["message"].startswith("About ") and "an estimate" in warning["message"]


def test_an_exact_count_of_repeated_rows_is_stated_without_hedging(tmp_path):
    result = profile(tmp_path, b"a,b\n1,2\n1,2\n3,4\n")

    (warning,) = warnings_by_code(result)["duplicate_rows"]
    assert warning["count"] == 1 and "estimate" not in warning
    assert warning["message"] == "1 row(s) (33.3%) repeat an earlier row exactly."


def test_values_of_fewer_than_k_rows_and_raw_extremes_are_not_described(tmp_path):
    lines = ["amount,kind"]
    lines += [f"{100 + i % 40}.5,{'common' if i % 10 else f'rare-{i}'}" for i in range(400)]
    lines.append("987654.321,common")

    result = profile(tmp_path, ("\n".join(lines) + "\n").encode())

    columns = {c["name"]: c for c in result.columns}
    assert "987654" not in str(columns) and "rare-" not in str(columns)
    assert [v["value"] for v in columns["kind"]["top_values"]] == ["common"]
    assert all(count >= 20 for count in columns["amount"]["histogram"]["counts"])
    assert sum(columns["amount"]["histogram"]["counts"]) == 401
