-- Uploaded media (images, voice, files): the metadata; the bytes live in media storage under storage_key.
CREATE TABLE IF NOT EXISTS media (
    id           TEXT PRIMARY KEY,
    owner_id     BIGINT NOT NULL REFERENCES users(id),
    kind         TEXT NOT NULL CHECK (kind IN ('image', 'voice', 'file')),
    mime         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    width        BIGINT,
    height       BIGINT,
    duration_ms  BIGINT,
    name         TEXT,
    storage_key  TEXT NOT NULL,
    thumb_key    TEXT,
    thumb_mime   TEXT,
    thumb_size   BIGINT,
    -- Served without a signature (avatars): `POST /v1/media?kind=image&public=1`.
    public       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);
-- The upload quota sums an owner's recent uploads.
CREATE INDEX IF NOT EXISTS media_by_owner ON media(owner_id, created_at);
-- The conversations a medium was sent to: their members may download it.
CREATE TABLE IF NOT EXISTS media_refs (
    media_id        TEXT NOT NULL REFERENCES media(id),
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    PRIMARY KEY (media_id, conversation_id)
);
