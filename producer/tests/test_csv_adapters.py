"""PaySim and Kaggle files replay into valid transactions; bad rows are reported by line."""

from __future__ import annotations

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

    assert [m["tx_id"] for m, _ in rows] == [
        "paysim-000000000",
        "paysim-000000001",
        "paysim-000000004",
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
