"""Connection lists written as connections are summarised, for captures of any size.

A report keeps a bounded list of connections. With ``rtinspect report
--connections -f json`` (or ``-f csv``) every connection is written out as
soon as its summary is known, in the order connections closed (those whose
transport waited on later traffic come last), and nothing of it is kept.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from ..measurements import ClientMeasurements
from ..report import ConnectionSummary, Report
from .csv import CONNECTION_FIELDS, cell, connection_record
from .json import connection_to_dict, report_to_dict

#: Formats whose connection list can be written as it is produced.
STREAMED_FORMATS = ("json", "csv")


class ConnectionStream:
    """Writes each connection to ``out`` as it comes (:meth:`write`), then what
    the format holds besides (:meth:`finish`). Nothing is written before the
    first connection, so a report with none leaves ``out`` untouched."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        if fmt not in STREAMED_FORMATS:
            raise ValueError(f"connections are streamed as {' or '.join(STREAMED_FORMATS)}, not {fmt}")
        self._fmt = fmt
        self._out = out
        self._csv = csv.writer(out, lineterminator="\n")
        self.written = 0

    def write(self, connection: ConnectionSummary) -> None:
        if self._fmt == "csv":
            if not self.written:
                self._csv.writerow(CONNECTION_FIELDS)
            self._csv.writerow([cell(value) for value in connection_record(connection)])
        else:
            self._out.write('{\n  "connections": [\n    ' if not self.written else ",\n    ")
            self._out.write(json.dumps(connection_to_dict(connection), ensure_ascii=False, allow_nan=False))
        self.written += 1

    def finish(self, report: Report, clients: ClientMeasurements | None = None) -> None:
        """Everything else the format holds: for JSON, the report's other keys (``clients`` too, if given)."""
        if self._fmt != "json" or not self.written:
            return
        self._out.write("\n  ]")
        for key, value in report_to_dict(report, clients).items():
            if key == "connections":
                continue
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).replace("\n", "\n  ")
            self._out.write(f",\n  {json.dumps(key)}: {text}")
        self._out.write("\n}\n")
