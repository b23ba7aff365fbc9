"""An independent reader of nines' tables: the `deltalake` package (delta-rs's Python
binding) with pyarrow. Prints, as JSON, what the Rust tests compare with their own ledger.

usage: delta_reader.py <data dir or storage URL> [<txn app id>...]
Storage options (S3 endpoint, keys) come as JSON in NINES_DELTA_OPTIONS.
"""

import json
import os
import sys

import pyarrow.compute as pc
from deltalake import DeltaTable


def table(root, name):
    options = json.loads(os.environ.get("NINES_DELTA_OPTIONS") or "{}")
    return DeltaTable(f"{root}/tables/{name}", storage_options=options or None)


def files_per_day(dt):
    out = {}
    for uri in dt.file_uris():
        day = uri.split("date=")[1].split("/")[0]
        out[day] = out.get(day, 0) + 1
    return out


def main():
    root = sys.argv[1]
    requests = table(root, "requests").to_pyarrow_table(
        columns=["error", "trace_id", "time", "date"]
    )
    sli = table(root, "sli_1m").to_pyarrow_table(columns=["total", "errors"])
    out = {
        "requests_rows": requests.num_rows,
        "requests_errors": pc.sum(pc.cast(requests["error"], "int64")).as_py() or 0,
        "requests_distinct_trace_ids": pc.count_distinct(requests["trace_id"]).as_py(),
        "requests_time_type": str(requests.schema.field("time").type),
        "sli_total": pc.sum(sli["total"]).as_py() or 0,
        "sli_errors": pc.sum(sli["errors"]).as_py() or 0,
        "deploys_rows": table(root, "deploys").to_pyarrow_table(columns=["time"]).num_rows,
        "incidents_rows": table(root, "incidents").to_pyarrow_table(columns=["id"]).num_rows,
        "dates": sorted(set(requests["date"].to_pylist())),
        # Data files per table and day, as the log says (not as the directory lists them).
        "files": {
            name: files_per_day(table(root, name))
            for name in ["requests", "sli_1m", "deploys", "incidents"]
        },
        "sli_dates": sorted(
            set(table(root, "sli_1m").to_pyarrow_table(columns=["date"])["date"].to_pylist())
        ),
        # The Kafka offset each table holds per partition (Delta's `txn` action).
        "txn": {
            app: {
                name: table(root, name).transaction_version(app)
                for name in ["requests", "sli_1m", "deploys", "incidents"]
            }
            for app in sys.argv[2:]
        },
    }
    print(json.dumps(out), flush=True)
    # pyarrow's S3 client aborts in its exit-time finalizer ("terminate called without an
    # active exception"); everything is printed, so leave without finalizers.
    os._exit(0)


if __name__ == "__main__":
    main()
