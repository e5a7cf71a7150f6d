"""PaySim and Kaggle files replay into valid transactions; bad rows are reported by line."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import orjson

from fraudpipe_common.contracts.transactions import decode_transaction
from fraudpipe_producer.csv_adapters import CsvOptions, CsvReport, read_csv

PAYSIM_HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
    "newbalanceDest,isFraud,isFlaggedFraud\n"
)
PAYSIM = (
    PAYSIM_HEADER
    + """1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0
1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0
1,TELEPORT,10.0,C1,0,0,M2,0,0,0,0
2,CASH_OUT,-5,C2,0,0,C3,0,0,0,0
2,CASH_OUT,229133.94,C905080434,15325.0,0.0,C476402209,5083.0,51513.44,0,0
3,PAYMENT,12.5,C9,0,0,M9,0,0,maybe,0
"""
)

KAGGLE_HEADER = "Time," + ",".join(f"V{i}" for i in range(1, 29)) + ",Amount,Class\n"


def kaggle_row(time: str, amount: str, label: str) -> str:
    return time + "," + ",".join(f"{i * 0.01:.2f}" for i in range(1, 29)) + f",{amount},{label}\n"


def test_paysim_rows_become_transactions_with_separate_labels(tmp_path: Path) -> None:
    path = tmp_path / "paysim.csv"
    path.write_text(PAYSIM)
    report = CsvReport()

    rows = list(read_csv(path, CsvOptions(format="paysim"), report))

    file_id = rows[0][0]["tx_id"].split("-")[1]
    assert re.fullmatch("[0-9a-f]{8}", file_id)
    assert [m["tx_id"] for m, _ in rows] == [
        f"paysim-{file_id}-000000000",
        f"paysim-{file_id}-000000001",
        f"paysim-{file_id}-000000004",
    ]
    for message, label in rows:
        tx = decode_transaction(orjson.dumps(message))  # valid transactions.v1
        assert "isFraud" not in message
        assert label.tx_id == tx.tx_id
    assert [label.is_fraud for _, label in rows] == [False, True, False]
    assert rows[1][0]["channel"] == "transfer"
    assert report.rows == 6
    assert report.rejected == 3
    assert report.problems == [
        "line 4: unknown PaySim type 'TELEPORT'",
        "line 5: amount '-5' is not a positive amount",
        "line 7: label 'maybe' is not 0 or 1",
    ]


def test_kaggle_rows_keep_their_components_as_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "creditcard.csv"
    path.write_text(
        KAGGLE_HEADER
        + kaggle_row("0", "149.62", "0")
        + kaggle_row("406", "0.00", "1")
        + "12,short,row\n"
        + kaggle_row("500", "2.5", "1")
    )
    report = CsvReport()

    rows = list(read_csv(path, CsvOptions(format="kaggle", kaggle_users=10), report))

    assert len(rows) == 3
    message, label = rows[2]
    tx = decode_transaction(orjson.dumps(message))
    assert tx.raw["v1"] == 0.01
    assert tx.user_id.startswith("kaggle-u")
    assert label.is_fraud is True
    assert rows[1][0]["amount"] == "0.01"  # a zero amount becomes the smallest valid one
    assert report.rejected == 1
    assert report.problems[0].startswith("line 4:")


def replay(path: Path, options: CsvOptions) -> tuple[list[str], CsvReport]:
    report = CsvReport()
    return [message["tx_id"] for message, _ in read_csv(path, options, report)], report


def test_a_file_replayed_twice_keeps_its_ids_and_other_files_never_share_them(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(PAYSIM)
    second.write_text(PAYSIM_HEADER + "1,PAYMENT,20.0,C77,0,0,M77,0,0,0,0\n")
    options = CsvOptions(format="paysim")

    once, _ = replay(first, options)
    again, _ = replay(first, options)
    other, _ = replay(second, options)

    assert once == again  # replaying the same file is idempotent downstream
    assert not set(once) & set(other)


def test_a_kaggle_file_s_ids_differ_from_another_kaggle_file_s(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(KAGGLE_HEADER + kaggle_row("0", "1.00", "0"))
    second.write_text(KAGGLE_HEADER + kaggle_row("0", "2.00", "0"))
    options = CsvOptions(format="kaggle")

    assert not set(replay(first, options)[0]) & set(replay(second, options)[0])


def test_malformed_paysim_rows_are_reported_by_line_and_never_stop_the_replay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paysim.csv"
    path.write_bytes(
        (
            PAYSIM_HEADER
            + "1,PAYMENT,7.5,C3,1,1\n"  # line 2: cut short after six fields
            + "1,PAYMENT,7.5,C3,1,1,M3,0,0\n"  # line 3: no isFraud
            + "1,PAYMENT,7.5,,1,1,M3,0,0,0,0\n"  # line 4: empty nameOrig
            + "99999999999999999,PAYMENT,7.5,C3,1,1,M3,0,0,0,0\n"  # line 5: beyond datetime
        ).encode()
        + b"1,PAYMENT,7.5,C\xff3,1,1,M3,0,0,0,0\n"  # line 6: not UTF-8
        + b"1,PAYMENT,8.5,C4,1,1,M4,0,0,1,0\n"  # line 7: fine
    )

    rows, report = replay(path, CsvOptions(format="paysim"))

    assert len(rows) == 1
    assert report.rows == 6
    assert report.rejected == 5
    assert report.problems[:2] == [
        "line 2: missing columns nameDest, oldbalanceDest, newbalanceDest, isFraud, isFlaggedFraud",
        "line 3: missing columns isFraud, isFlaggedFraud",
    ]
    assert report.problems[2].startswith("line 4: user_id: expected a string of 1 to 128")
    assert report.problems[3].startswith("line 5: ")
    assert report.problems[4] == "line 6: not valid UTF-8"


def test_malformed_kaggle_rows_are_reported_by_line_and_never_stop_the_replay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "creditcard.csv"
    path.write_text(
        KAGGLE_HEADER
        + kaggle_row("0", "1.00", "0").replace(",0\n", "\n")  # line 2: no Class
        + kaggle_row("inf", "1.00", "0")  # line 3
        + kaggle_row("nan", "1.00", "0")  # line 4
        + kaggle_row("0", "1.00", "0").replace("0.01", "nan", 1)  # line 5: V1 is not a number
        + kaggle_row("1", "1.00", "1")  # line 6: fine
    )

    rows, report = replay(path, CsvOptions(format="kaggle"))

    assert len(rows) == 1
    assert report.problems == [
        "line 2: missing column Class",
        "line 3: Time 'inf' is not a finite number",
        "line 4: Time 'nan' is not a finite number",
        "line 5: V1 'nan' is not a finite number",
    ]


def test_a_csv_level_error_is_a_rejected_row_too(tmp_path: Path) -> None:
    path = tmp_path / "paysim.csv"
    huge = "x" * (csv.field_size_limit() + 1)
    path.write_text(
        PAYSIM_HEADER
        + f"1,PAYMENT,7.5,{huge},1,1,M3,0,0,0,0\n"
        + "1,PAYMENT,8.5,C4,1,1,M4,0,0,1,0\n"
    )

    rows, report = replay(path, CsvOptions(format="paysim"))

    assert len(rows) == 1
    assert report.rejected == 1
    assert report.problems[0].startswith("line 2: ")
