-- The initial schema, the same shape as SQLite's. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    openid       TEXT UNIQUE,
    unionid      TEXT,
    session_key  TEXT,
    dev_name     TEXT UNIQUE,
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    extended_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX users_by_name ON users(display_name);
CREATE TABLE conversations (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'room')),
    name       TEXT,
    visibility TEXT CHECK (visibility IN ('public', 'invite')),
    owner_id   BIGINT REFERENCES users(id),
    direct_lo  BIGINT REFERENCES users(id),
    direct_hi  BIGINT REFERENCES users(id),
    last_seq   BIGINT NOT NULL DEFAULT 0,
    last_ts    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (direct_lo, direct_hi)
);
CREATE INDEX rooms_public ON conversations(visibility, last_ts) WHERE kind = 'room';
CREATE TABLE members (
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    user_id         BIGINT NOT NULL REFERENCES users(id),
    role            TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at       BIGINT NOT NULL,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members(user_id, conversation_id);
CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    sender_id       BIGINT NOT NULL REFERENCES users(id),
    cmid            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    content         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, cmid)
);
