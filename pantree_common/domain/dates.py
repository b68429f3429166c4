"""Calendar days as integers (days since 1970-01-01) and their google.type.Date form."""

from __future__ import annotations

import calendar
import datetime as dt

from google.type import date_pb2

EPOCH = dt.date(1970, 1, 1)


def to_epoch_day(day: dt.date) -> int:
    return (day - EPOCH).days


def from_epoch_day(epoch_day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(epoch_day))


def today_epoch_day() -> int:
    return to_epoch_day(dt.datetime.now(dt.UTC).date())


def to_proto(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def epoch_day_to_proto(epoch_day: int) -> date_pb2.Date:
    return to_proto(from_epoch_day(epoch_day))


def from_proto(message: date_pb2.Date, field: str) -> dt.date:
    """A full calendar date from a google.type.Date; raises ValueError naming `field` if partial
    or impossible."""
    try:
        return dt.date(message.year, message.month, message.day)
    except ValueError as exc:
        raise ValueError(
            f"{field}: {message.year:04d}-{message.month:02d}-{message.day:02d} is not a "
            f"full calendar date ({exc})"
        ) from None


def shift_months(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` months later, clamped to the end of short months
    (Jan 31 + 1 month = Feb 28 or 29)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
