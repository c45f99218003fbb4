-- Uploaded media (images, voice, files): the metadata; the bytes live in media storage under storage_key.
CREATE TABLE IF NOT EXISTS media (
    id           TEXT PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users(id),
    kind         TEXT NOT NULL CHECK (kind IN ('image', 'voice', 'file')),
    mime         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    duration_ms  INTEGER,
    name         TEXT,
    storage_key  TEXT NOT NULL,
    thumb_key    TEXT,
    thumb_mime   TEXT,
    thumb_size   INTEGER,
    -- Served without a signature (avatars): `POST /v1/media?kind=image&public=1`.
    public       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- The upload quota sums an owner's recent uploads.
CREATE INDEX IF NOT EXISTS media_by_owner ON media(owner_id, created_at);
-- The conversations a medium was sent to: their members may download it.
CREATE TABLE IF NOT EXISTS media_refs (
    media_id        TEXT NOT NULL REFERENCES media(id),
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    PRIMARY KEY (media_id, conversation_id)
) WITHOUT ROWID;
