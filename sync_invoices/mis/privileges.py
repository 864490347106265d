"""The grants a push needs (README "Connecting"), checked before anything is claimed, and MySQL's
"command denied" errors (1142 table, 1143 column, 1044 database) turned into the GRANT to run.

Each privilege is proven by the statement that needs it, made to touch nothing (`WHERE false`, `LIMIT 0`)
inside a transaction that is rolled back: the server checks privileges before it looks at a row, and
this way roles, wildcards and column grants count exactly as they will for the real statements. SQLite
has no grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import delete, false, insert, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import ConfigError
from . import tables as t

if TYPE_CHECKING:
    from .db import Mis

DENIED_CODES = {1142, 1143, 1044}
MIS_READ = (t.invoice, t.personal_ug, t.online_application, t.income_category)
SYNC_COLUMNS = {  # the [sync] columns of mis_schema.sql: the only MIS columns the tool writes
    t.invoice: ("QuickBk_Status", "pushed_by", "pushed_date", "quickbooks_id", "sync_token"),
    t.personal_ug: ("qk_id",),
    t.online_application: ("quickbooks_id",),
}
QB_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX"
_TABLE = re.compile(r"^(\w+) command denied to user .* for table [`']?(?:[^`'.]+[`']?\.[`']?)?([^`'.]+)[`']?\s*$")
_COLUMN = re.compile(r"^(\w+) command denied to user .* for column '([^']+)' in table '([^']+)'")


@dataclass(frozen=True)
class Denied:
    """One privilege the server refused: the command (SELECT, UPDATE, CREATE...), the table, the column."""

    command: str
    table: str
    column: str | None = None
    code: int = 1142


def denial(exc: BaseException) -> Denied | None:
    """What a 1142 / 1143 error refused (None for any other error)."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if not (len(args) >= 2 and args[0] in DENIED_CODES):
        return None
    message = str(args[1])
    column = _COLUMN.match(message)
    if column:
        return Denied(column.group(1).upper(), column.group(3), column.group(2), code=args[0])
    table = _TABLE.match(message)
    if table:
        return Denied(table.group(1).upper(), table.group(2), code=args[0])
    return Denied("ACCESS", "*", code=args[0])  # 1044: nothing at all on the database


def account(conn: Connection) -> str:
    """The account the server matched this session to, as a GRANT names it: 'user'@'host'."""
    user, _, host = str(conn.execute(text("SELECT CURRENT_USER()")).scalar() or "").rpartition("@")
    return f"'{user}'@'{host}'"


def current_database(conn: Connection) -> str:
    """The database this session uses."""
    return str(conn.execute(text("SELECT DATABASE()")).scalar() or "")


def grants(denied: Iterable[Denied], database: str, who: str) -> list[str]:
    """The GRANT statements that give what was refused (qb_* tables get everything the tool does to them)."""
    statements: dict[str, str] = {}
    for d in denied:
        if d.table.startswith("qb_") or d.command in ("CREATE", "ALTER", "INDEX", "DROP"):
            statements[d.table] = f"GRANT {QB_PRIVILEGES} ON `{database}`.`{d.table}` TO {who};"
    columns: dict[tuple[str, str], list[str]] = {}
    for d in denied:
        if d.table in statements or d.table == "*":
            continue
        if d.column is not None:
            columns.setdefault((d.command, d.table), []).append(d.column)
        else:
            columns.setdefault((d.command, d.table), [])
    for (command, table), names in columns.items():
        listed = f" ({', '.join(dict.fromkeys(names))})" if names else ""
        statements[f"{command} {table}"] = f"GRANT {command}{listed} ON `{database}`.`{table}` TO {who};"
    if any(d.table == "*" for d in denied):
        statements["*"] = f"GRANT SELECT ON `{database}`.* TO {who};"
    return list(statements.values())


def describe(denied: Iterable[Denied]) -> str:
    """'UPDATE on tbl_imvoice (QuickBk_Status, pushed_by); INSERT, DELETE on qb_sync_runs', in the order found."""
    tables: dict[str, dict[str, list[str]]] = {}
    for d in denied:
        columns = tables.setdefault(d.table, {}).setdefault(d.command, [])
        if d.column and d.column not in columns:
            columns.append(d.column)
    parts = []
    for table, commands in tables.items():
        for_columns = [f"{command} ({', '.join(names)})" for command, names in commands.items() if names]
        whole = [command for command, names in commands.items() if not names]
        parts.append(f"{', '.join(for_columns + whole)} on {table}")
    return "; ".join(parts)


def missing_grants(denied: list[Denied], database: str, who: str, shown_url: str) -> ConfigError:
    """The one error for refused privileges: what is missing, and the GRANT that gives it."""
    return ConfigError(f"The MIS database user {who} at {shown_url} lacks privileges sync_invoices needs: "
                       f"{describe(denied)} (MySQL error {', '.join(sorted({str(d.code) for d in denied}))}).",
                       fix="Nothing was claimed or changed. Ask the database administrator to run: "
                           + " ".join(grants(denied, database, who)))


def _probes(present: set[str]) -> list[tuple[str | None, Any]]:
    # (the [sync] column a probe is about, the statement): a refusal of the whole table is reported for
    # that column, so the GRANT asked for is never wider than the columns the tool writes.
    probes: list[tuple[str | None, Any]] = [(None, select(table).limit(0)) for table in MIS_READ]
    for table, names in SYNC_COLUMNS.items():
        probes += [(name, update(table).where(false()).values({name: table.c[name]})) for name in names]
    for table in t.qb_metadata.sorted_tables:
        if table.name not in present:
            continue  # created by ensure_tables, whose own refusal is decoded the same way
        columns = list(table.primary_key.columns)
        probes += [
            (None, select(table).limit(0)),
            # Every column named: strict mode refuses a NOT NULL column left out, even of zero rows.
            (None, insert(table).from_select(list(table.columns), select(table).where(false()))),
            (None, update(table).where(false()).values({columns[0].name: columns[0]})),
            (None, delete(table).where(false())),
        ]
    return probes


def check(mis: "Mis") -> None:
    """ConfigError naming every privilege a push needs and lacks, with the GRANT to run; before anything is
    claimed (MariaDB/MySQL; SQLite has no grants)."""
    if mis.dialect == "sqlite":
        return
    denied: list[Denied] = []
    with mis.read() as conn:
        who, database = account(conn), current_database(conn)
        present = set(inspect(conn).get_table_names())
        try:
            for column, statement in _probes(present):
                try:
                    with conn.begin_nested():
                        conn.execute(statement)
                except DBAPIError as exc:
                    found = denial(exc)
                    if found is None:
                        raise
                    denied.append(found if found.column or column is None else replace(found, column=column))
        finally:
            conn.rollback()
    if denied:
        raise missing_grants(denied, database, who, mis.shown_url)
