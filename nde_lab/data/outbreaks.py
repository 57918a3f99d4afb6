"""Bundled outbreak data: the 1978 boarding-school influenza outbreak (763 pupils, 14 daily counts)."""

from __future__ import annotations

from importlib import resources

from nde_lab.data.series import Series, _read_csv_text
from nde_lab.errors import DataError

__all__ = ["BOARDING_SCHOOL_COLUMNS", "BOARDING_SCHOOL_POPULATION", "load_boarding_school"]

#: pupils at risk (the SIR model's N)
BOARDING_SCHOOL_POPULATION = 763
#: count columns of the file: pupils confined to bed, pupils convalescent (not yet back in class)
BOARDING_SCHOOL_COLUMNS = ("in_bed", "convalescent")
_FILE = "boarding_school_influenza_1978.csv"


def load_boarding_school(columns: list[str] | tuple[str, ...] = ("in_bed",)) -> Series:
    """Influenza in an English boarding school, 22 January - 4 February 1978 (BMJ 1978;1(6112):587).

    Times are days since 1978-01-21, so the 14 daily counts sit at t = 1, ..., 14 and t0 = 0 (the day
    before the first count) is the SIR model's initial time. Values (14, len(columns)) are counts of
    pupils out of 763; `columns` picks among `BOARDING_SCHOOL_COLUMNS` (default: `in_bed` only).
    Source note in the file (and in `attrs["source_note"]`).
    """
    unknown = [c for c in columns if c not in BOARDING_SCHOOL_COLUMNS]
    if unknown or not columns:
        raise DataError(f"BoardingSchool columns: {unknown or list(columns)} not available; "
                        f"choose among {list(BOARDING_SCHOOL_COLUMNS)}.")
    text = resources.files("nde_lab.data").joinpath(f"files/{_FILE}").read_text()
    note = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
    raw = _read_csv_text(text, where=_FILE, time_column="day", state_columns=list(columns))
    return Series(
        times=raw.times,
        values=raw.values,
        state_names=list(columns),
        time_units="days since 1978-01-21",
        source=f"nde_lab/data/files/{_FILE}",
        attrs={"units": f"pupils (of {BOARDING_SCHOOL_POPULATION})", "source_note": note},
    )
