#!/usr/bin/env python3
"""What a running xindao's SQLite commits write: WAL frames per commit, by table and index.

Every page a commit changes is written to the WAL as one 4 KiB frame (and later copied into the database by a
checkpoint, and written back to disk by both fsyncs), so the frames per commit and per message are what the
store's I/O costs. This reads the frames of the current WAL generation and names the b-tree each page belongs
to (SQLite's dbstat table on a copy of the database).

Usage, while a load runs (the server is paused for the moment of the copy, so the two files match):

    kill -STOP $PID; cp DATA/xindao.db DATA/xindao.db-wal /tmp/snap/; kill -CONT $PID
    python3 bench/wal_pages.py /tmp/snap/xindao.db [messages-per-commit]

Pages the database copy does not have yet (the file grew since the last checkpoint) are counted as "new".
"""

import collections
import sqlite3
import struct
import sys


def frames_of(wal_path):
    """(page number, is-commit) of each frame of the WAL's current generation (frames whose salts match)."""
    wal = open(wal_path, "rb").read()
    if len(wal) < 32:
        return []
    _magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:32])
    frames, offset = [], 32
    while offset + 24 + page_size <= len(wal):
        page, db_size, frame_salt1, frame_salt2 = struct.unpack(">4I", wal[offset:offset + 16])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        frames.append((page, db_size != 0))
        offset += 24 + page_size
    return frames


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    db_path = sys.argv[1]
    per_commit_messages = float(sys.argv[2]) if len(sys.argv) > 2 else None
    frames = frames_of(db_path + "-wal")
    commits = sum(1 for _, is_commit in frames if is_commit)
    if not commits:
        sys.exit("no committed frames in the WAL's current generation")
    # Open the copy without its WAL so that reading it does not checkpoint or change anything.
    conn = sqlite3.connect(f"file:{db_path}?immutable=1", uri=True)
    owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    by_btree = collections.Counter(owner.get(page, "new") for page, _ in frames)
    print(f"{len(frames)} frames in {commits} commits: {len(frames) / commits:.1f} frames per commit")
    if per_commit_messages:
        print(f"  {len(frames) / commits / per_commit_messages:.2f} frames per message "
              f"at {per_commit_messages:g} messages per commit")
    for name, count in by_btree.most_common():
        print(f"{count:8d}  {count / commits:6.1f} per commit  {100 * count / len(frames):5.1f}%  {name}")


if __name__ == "__main__":
    main()
