#!/usr/bin/env python3
"""The SQLite append's membership statement before and after the server API (mute, system sender), timed alone.

The statement that takes a message's seq also checks that the sender may send. The server API made it read
`muted_until` from the membership row it already reads, and the system account's user row when the sender is
not a member (docs/decisions/server-api-checks-in-the-append.md). This times both forms on an in-memory
database of 50,000 two-member conversations, 200,000 calls each, three rounds; Python's own call overhead is
included, so only a difference larger than the spread between rounds means anything.

Usage: python3 bench/append_statement.py
"""
import sqlite3, time, random
db = sqlite3.connect(":memory:")
db.executescript("""
CREATE TABLE users (id INTEGER PRIMARY KEY, display_name TEXT, system_name TEXT);
CREATE UNIQUE INDEX users_by_system_name ON users(system_name);
CREATE TABLE conversations (id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0, archived_at INTEGER);
CREATE TABLE members (conversation_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT, joined_at INTEGER,
  read_seq INTEGER DEFAULT 0, muted_until INTEGER, PRIMARY KEY (conversation_id, user_id)) WITHOUT ROWID;
""")
N = 50000
db.executemany("INSERT INTO users (id, display_name) VALUES (?, 'u')", [(i,) for i in range(1, 2*N+1)])
db.executemany("INSERT INTO conversations (id) VALUES (?)", [(i,) for i in range(1, N+1)])
db.executemany("INSERT INTO members (conversation_id, user_id) VALUES (?, ?)", [(i, 2*i-1) for i in range(1, N+1)] + [(i, 2*i) for i in range(1, N+1)])
db.commit()
OLD = """SELECT c.last_seq + 1 FROM conversations c
 WHERE c.id = ?1 AND EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = ?1 AND m.user_id = ?2)"""
NEW = """SELECT c.last_seq + 1 FROM conversations c
 WHERE c.id = ?1 AND (EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = ?1 AND m.user_id = ?2
        AND (m.muted_until IS NULL OR m.muted_until <= ?3))
    OR (c.archived_at IS NULL AND EXISTS (SELECT 1 FROM users u WHERE u.id = ?2 AND u.system_name IS NOT NULL)))"""
calls = [(c, 2*c-1) for c in (random.randint(1, N) for _ in range(200000))]
def run(sql, params):
    t = time.perf_counter()
    for p in params:
        db.execute(sql, p).fetchone()
    return (time.perf_counter() - t) / len(params) * 1e6
for rnd in range(3):
    o = run(OLD, calls)
    n = run(NEW, [(c, u, 1) for c, u in calls])
    nm = run(NEW, [(c, u+2 if u+2 <= 2*N else 1, 1) for c, u in calls])  # not a member: refused path
    print(f"round {rnd}: member old {o:.2f} us, new {n:.2f} us; non-member new {nm:.2f} us")
