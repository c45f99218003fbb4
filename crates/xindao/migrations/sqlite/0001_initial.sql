-- The initial schema. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    openid       TEXT UNIQUE,
    unionid      TEXT,
    session_key  TEXT,
    dev_name     TEXT UNIQUE,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    extended_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX users_by_name ON users(display_name);
CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'room')),
    name       TEXT,
    visibility TEXT CHECK (visibility IN ('public', 'invite')),
    owner_id   INTEGER REFERENCES users(id),
    direct_lo  INTEGER REFERENCES users(id),
    direct_hi  INTEGER REFERENCES users(id),
    last_seq   INTEGER NOT NULL DEFAULT 0,
    last_ts    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (direct_lo, direct_hi)
);
CREATE INDEX rooms_public ON conversations(visibility, last_ts) WHERE kind = 'room';
CREATE TABLE members (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    user_id         INTEGER NOT NULL REFERENCES users(id),
    role            TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, conversation_id);
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL REFERENCES users(id),
    cmid            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    content         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, cmid)
);
