"""Third-party Flight SQL clients against nines' query server (tests/query.rs).

Usage: flight_clients.py URI USER KEY SQL [SQL ...]

For each statement prints one JSON line:
  {"adbc": rows by ADBC's Flight SQL driver (username/password: the Basic handshake, then its
   bearer token; prepared statements, as ADBC runs every query),
   "raw": rows by pyarrow.flight with a hand-built CommandStatementQuery and the key as bearer,
   "schemas_agree": whether the FlightInfo schema equals the schema of the data DoGet sent,
   "adbc_schema": the result schema ADBC saw, as strings}
"""

import json
import os
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as fl


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_query(sql):
    """google.protobuf.Any of arrow.flight.protocol.sql.CommandStatementQuery{query}."""
    command = field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, command)


def plain(v):
    """JSON-able cells (decimals and big floats as they print)."""
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def rows(table):
    return [{k: plain(v) for k, v in r.items()} for r in table.to_pylist()]


def main():
    uri, user, key, *statements = sys.argv[1:]
    conn = flight_sql.connect(uri, db_kwargs={"username": user, "password": key})
    raw = fl.FlightClient(uri)
    options = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer " + key.encode())])
    for sql in statements:
        cur = conn.cursor()
        cur.execute(sql)
        adbc = cur.fetch_arrow_table()
        cur.close()
        info = raw.get_flight_info(fl.FlightDescriptor.for_command(statement_query(sql)), options)
        table = raw.do_get(info.endpoints[0].ticket, options).read_all()
        print(json.dumps({
            "adbc": rows(adbc),
            "raw": rows(table),
            "schemas_agree": info.schema.equals(table.schema, check_metadata=False),
            "adbc_schema": [str(f) for f in adbc.schema],
        }), flush=True)
    conn.close()
    raw.close()
    # pyarrow's finalizers can abort at exit on some builds; everything is printed.
    os._exit(0)


if __name__ == "__main__":
    main()
