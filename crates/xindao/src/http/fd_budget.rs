//! The open-file budget: every connection is a file descriptor, and so is every file and socket the store,
//! the bus and the listeners need. At startup the soft `RLIMIT_NOFILE` is raised to the hard limit, and the
//! connection caps are lowered if they do not leave [`reserve`] descriptors free: a server full of
//! connections must still accept on its listeners, checkpoint its WAL and reach PostgreSQL.

use crate::config::{Config, StoreConfig};
use crate::error::{Error, Result};

/// Descriptors kept for everything but client connections: SQLite's database, WAL and shared-memory files
/// per connection of its pool and its temporary files (or the PostgreSQL pool's sockets, added on top), the
/// bus's sockets, the two listeners and the admin listener's connections ([`super::ADMIN_MAX_CONNECTIONS`]),
/// outgoing HTTPS calls to WeChat, epoll and eventfds, the standard streams, and headroom for the rest.
pub fn reserve(config: &Config) -> usize {
    let store = match config.store {
        StoreConfig::Sqlite => 0,
        StoreConfig::Postgres { .. } => config.postgres_pool_size,
    };
    256 + store
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force.
fn raise_nofile_limit() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
        }
    }
    // None is unlimited.
    limit
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Fits `max_connections` and `max_pending_connections` into the open-file limit, leaving the reserve;
/// lowers them with a warning when they do not fit, refuses to start when not even one of each fits.
pub fn apply(config: &mut Config) -> Result<()> {
    fit(config, raise_nofile_limit())
}

fn fit(config: &mut Config, limit: usize) -> Result<()> {
    let reserve = reserve(config);
    let available = limit.saturating_sub(reserve);
    if config
        .max_connections
        .saturating_add(config.max_pending_connections)
        <= available
    {
        return Ok(());
    }
    if available < 2 {
        return Err(Error::Unavailable(format!(
            "the open-file limit ({limit}) leaves no room for connections beside the {reserve} kept for the \
             store and listeners: raise it (ulimit -n, LimitNOFILE=)"
        )));
    }
    // A quarter of the room for connections that have not upgraded yet, the rest for WebSockets.
    let pending = config.max_pending_connections.min((available / 4).max(1));
    let connections = config.max_connections.min(available - pending);
    tracing::warn!(
        limit,
        reserve,
        max_connections = connections,
        max_pending_connections = pending,
        "the open-file limit is too low for max_connections ({}) + max_pending_connections ({}): lowered \
         (raise it with ulimit -n or LimitNOFILE=)",
        config.max_connections,
        config.max_pending_connections,
    );
    config.max_connections = connections;
    config.max_pending_connections = pending;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_are_lowered_to_leave_the_reserve() {
        let mut config = Config::default();
        fit(&mut config, 1_048_576).unwrap();
        assert_eq!(config.max_connections, 19_000, "fits: untouched");
        assert_eq!(config.max_pending_connections, 1024);

        fit(&mut config, 1024).unwrap();
        assert_eq!(config.max_pending_connections, 192);
        assert_eq!(config.max_connections, 1024 - 256 - 192);

        let mut postgres = Config {
            store: "postgres://u@h/db".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(reserve(&postgres), 256 + 16);
        assert!(fit(&mut postgres, 200).is_err(), "no room at all");
    }
}
