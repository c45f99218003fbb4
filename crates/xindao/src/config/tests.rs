//! Unit tests of the configuration: defaults, layering, validation and masking.
use std::time::Duration;

use super::*;

#[test]
fn the_defaults_are_the_zero_configuration_setup() {
    let config = Config::default();
    assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(config.store, StoreConfig::Sqlite);
    assert_eq!(config.bus, BusConfig::Local);
    assert_eq!(config.session_ttl_secs, 30 * 24 * 3600);
    assert_eq!(config.max_frame_bytes, 64 * 1024);
    assert_eq!(config.dev_login, DevLogin::Auto);
    assert_eq!(config.commit_linger_us, None);
    assert!(config.validate().is_ok());
    assert_eq!(
        config.admin_listen,
        AdminListen(Some(SocketAddr::from(([127, 0, 0, 1], 9090))))
    );
}

#[test]
fn the_admin_listener_can_be_turned_off_and_proxies_are_cidrs() {
    let config: Config =
        toml::from_str("admin_listen = \"\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1/32\"]")
            .unwrap();
    assert_eq!(config.admin_listen, AdminListen(None));
    assert_eq!(config.trusted_proxies.len(), 2);
    assert!(toml::from_str::<Config>("trusted_proxies = [\"nonsense\"]").is_err());
    assert!(toml::from_str::<Config>("admin_listen = \"localhost\"").is_err());
}

#[test]
fn trace_export_is_off_by_default_and_checked_when_on() {
    let config = Config::default();
    assert_eq!(config.otel_endpoint, None);
    assert_eq!(config.otel_service_name, "xindao");
    assert_eq!(config.otel_sample_ratio, 1.0);
    let otel = |endpoint: &str, service: &str, ratio: f64| {
        Config {
            otel_endpoint: Some(endpoint.into()),
            otel_service_name: service.into(),
            otel_sample_ratio: ratio,
            ..Config::default()
        }
        .validate()
        .is_ok()
    };
    assert!(otel("http://127.0.0.1:4318", "chat", 0.0));
    assert!(otel("https://tempo.example/v1/traces", "chat", 1.0));
    assert!(!otel("127.0.0.1:4318", "chat", 1.0));
    assert!(!otel("ftp://c", "chat", 1.0));
    assert!(!otel("http://c", "", 1.0));
    assert!(!otel("http://c", "chat", 1.5));
    assert!(!otel("http://c", "chat", -0.1));
    assert!(!otel("http://c", "chat", f64::NAN));
}

#[test]
fn the_commit_linger_defaults_to_the_stores_own() {
    let linger = |store: &str, set: Option<u64>| {
        Config {
            store: store.parse().unwrap(),
            commit_linger_us: set,
            ..Config::default()
        }
        .commit_linger()
    };
    assert_eq!(linger("sqlite", None), Duration::ZERO);
    assert_eq!(linger("postgres://u@h/db", None), Duration::from_millis(1));
    assert_eq!(linger("sqlite", Some(250)), Duration::from_micros(250));
    assert_eq!(linger("postgres://u@h/db", Some(0)), Duration::ZERO);
}

#[test]
fn no_secret_in_debug_or_toml() {
    let config = Config {
        store: "postgres://u:pw1@h/db".parse().unwrap(),
        bus: "nats://u:pw2@h:4222".parse().unwrap(),
        wechat_appid: Some("wxA".into()),
        wechat_secret: Some("pw3".into()),
        ..Config::default()
    };
    for shown in [format!("{config:?}"), config.to_toml_masked()] {
        assert!(!shown.contains("pw"), "{shown}");
    }
    assert!(config
        .to_toml_masked()
        .contains("wechat_secret = \"********\""));
}

#[test]
fn dev_login_reads_words_and_booleans() {
    let parse = |toml: &str| toml::from_str::<Config>(toml).map(|c| c.dev_login);
    assert_eq!(parse("dev_login = true").unwrap(), DevLogin::True);
    assert_eq!(parse("dev_login = \"off\"").unwrap(), DevLogin::False);
    assert_eq!(parse("dev_login = \"auto\"").unwrap(), DevLogin::Auto);
    assert!(parse("dev_login = \"maybe\"").is_err());
}

#[test]
fn auto_dev_login_is_on_only_on_loopback_without_wechat() {
    let resolve = |listen: &str, dev_login, wechat: bool| {
        let config = Config {
            listen: listen.parse().unwrap(),
            dev_login,
            wechat_appid: wechat.then(|| "wxA".into()),
            wechat_secret: wechat.then(|| "s".into()),
            ..Config::default()
        };
        (
            config.dev_login_enabled(),
            config.check_login_exposure().is_ok(),
        )
    };
    use DevLogin::*;
    assert_eq!(resolve("127.0.0.1:8080", Auto, false), (true, true));
    assert_eq!(resolve("[::1]:8080", Auto, false), (true, true));
    assert_eq!(resolve("127.0.0.1:8080", Auto, true), (false, true));
    assert_eq!(resolve("0.0.0.0:8080", Auto, false), (false, false));
    assert_eq!(resolve("0.0.0.0:8080", Auto, true), (false, true));
    assert_eq!(resolve("0.0.0.0:8080", True, false), (true, true));
    assert_eq!(resolve("0.0.0.0:8080", False, false), (false, true));
}

#[test]
fn a_file_with_an_unknown_key_is_refused_and_grouped_keys_stay_top_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xindao.toml");
    let none = serde_json::Map::new();
    std::fs::write(&path, "heartbeat_ms = 20000\nhartbeat_ms = 1\n").unwrap();
    let refused = Config::load(Some(&path), &none).unwrap_err().to_string();
    assert!(refused.contains("unknown key `hartbeat_ms`"), "{refused}");
    std::fs::write(
        &path,
        "content_check_scene = 3\nmedia_max_image_mb = 5\nwechat_notify_window_secs = 60\n",
    )
    .unwrap();
    let config = Config::load(Some(&path), &none).unwrap();
    assert_eq!(config.wechat_services.content_check_scene, 3);
    assert_eq!(config.media.media_max_image_mb, 5);
    assert_eq!(config.wechat_services.wechat_notify_window_secs, 60);
    assert_eq!(
        config.media.media_max_voice_mb,
        Config::default().media.media_max_voice_mb
    );
    assert!(toml::to_string(&config)
        .unwrap()
        .contains("media_max_image_mb = 5"));
}
