"""Independent reader for the fault harness: reads every Delta table of a lake with the
`deltalake` and `polars` packages (not restock) and prints one JSON object:

    {"tables": {NAME: {"version": V, "run_id": R, "rows": N, "checksum": {COLUMN: HASH}}},
     "errors": [MESSAGE, ...]}

The checksum of a column is independent of row order (sum of the values' hashes), so two
tables with the same rows compare equal however their files are split.

usage: python3 benches/check_lake.py LAKE_DIR
"""
import json
import os
import sys

import polars as pl
from deltalake import DeltaTable


def table_state(path):
    dt = DeltaTable(path)
    version = dt.version()
    info = dt.history(1)[0] if version >= 0 else {}
    df = pl.read_delta(path, version=version)
    checksum = {}
    for name in sorted(df.columns):
        col = df.get_column(name)
        checksum[name] = str(col.hash(seed=7).sum())
    return {"version": version, "run_id": info.get("restock.run_id"), "rows": df.height, "checksum": checksum}


def main():
    lake = sys.argv[1]
    tables_dir = os.path.join(lake, "tables")
    out = {"tables": {}, "errors": []}
    for name in sorted(os.listdir(tables_dir)) if os.path.isdir(tables_dir) else []:
        path = os.path.join(tables_dir, name)
        if not os.path.isdir(os.path.join(path, "_delta_log")):
            continue
        try:
            out["tables"][name] = table_state(path)
        except Exception as e:  # noqa: BLE001 - every failure to read is a finding
            out["errors"].append(f"{name}: {type(e).__name__}: {e}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
