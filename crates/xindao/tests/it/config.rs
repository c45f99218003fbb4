//! Configuration layering through the real binary: defaults <- TOML file <- XINDAO_* environment <- flags.

use std::process::Command;

fn xindao(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xindao"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run xindao")
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xindao.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:7001\"\nheartbeat_ms = 1000\nrate_per_sec = 5\nwechat_appid = \"wxA\"\nwechat_secret = \"s3cret\"\n").unwrap();
    let path = file.to_str().unwrap();
    let output = xindao(
        &["config", "--config", path, "--rate-per-sec", "7"],
        &[
            ("XINDAO_HEARTBEAT_MS", "2000"),
            ("XINDAO_RATE_PER_SEC", "6"),
            ("XINDAO_BIN", "/not/a/key"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains("listen = \"127.0.0.1:7001\""),
        "file: {shown}"
    );
    assert!(
        shown.contains("heartbeat_ms = 2000"),
        "env over file: {shown}"
    );
    assert!(shown.contains("rate_per_sec = 7"), "flag over env: {shown}");
    assert!(
        shown.contains("idle_timeout_ms = 45000"),
        "defaults shown: {shown}"
    );
    assert!(!shown.contains("s3cret"), "secrets masked: {shown}");
}

#[test]
fn bad_configuration_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let output = xindao(&["config", "--config", file.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("lisen"),
        "typo named"
    );
    let output = xindao(
        &[
            "config",
            "--heartbeat-ms",
            "5000",
            "--idle-timeout-ms",
            "100",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("idle_timeout_ms"));
    let output = xindao(&["config", "--sqlite-cache-mb", "0"], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("sqlite_cache_mb"));
    let output = xindao(&["serve", "--help"], &[]);
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("[default: 127.0.0.1:8080]") && help.contains("[default: 45000]"),
        "{help}"
    );
}

#[test]
fn defaults_then_file_then_env_then_flags_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xindao.toml");
    std::fs::write(
        &file,
        "max_text_chars = 100\nmax_custom_bytes = 2000\nhistory_page_max = 50\ndev_login = false\n",
    )
    .unwrap();
    let output = xindao(
        &[
            "config",
            "-c",
            file.to_str().unwrap(),
            "--history-page-max",
            "70",
        ],
        &[
            ("XINDAO_MAX_CUSTOM_BYTES", "3000"),
            ("XINDAO_HISTORY_PAGE_MAX", "60"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    for line in [
        "max_frame_bytes = 65536", // default
        "max_text_chars = 100",    // file over default
        "dev_login = \"false\"",   // a TOML boolean read as the word
        "max_custom_bytes = 3000", // env over file
        "history_page_max = 70",   // flag over env over file
        "store = \"sqlite\"",
        "bus = \"local\"",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
}

#[test]
fn store_and_bus_are_parsed_at_load_and_their_secrets_masked() {
    let output = xindao(
        &["config", "--bus", "nats://token@127.0.0.1:4222"],
        &[
            ("XINDAO_STORE", "postgresql://xindao:pg-pass@db/xindao"),
            ("XINDAO_DEV_LOGIN", "true"),
            (
                "XINDAO_CLUSTER_SECRET",
                "cluster-secret-of-at-least-32-bytes",
            ),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains("store = \"postgresql://xindao:********@db/xindao\""),
        "{shown}"
    );
    assert!(
        shown.contains("bus = \"nats://********@127.0.0.1:4222\""),
        "{shown}"
    );
    assert!(shown.contains("dev_login = \"true\""), "{shown}");
    assert!(
        !shown.contains("pg-pass")
            && !shown.contains("token@")
            && !shown.contains("cluster-secret-of"),
        "{shown}"
    );

    for (args, env, key) in [
        (
            vec!["config", "--store", "mysql://u:hidden@h/db"],
            vec![],
            "store",
        ),
        (
            vec!["config"],
            vec![("XINDAO_BUS", "kafka://u:hidden@h")],
            "bus",
        ),
        (vec!["config", "--dev-login", "maybe"], vec![], "dev-login"),
    ] {
        let output = xindao(&args, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} {env:?} refused");
        assert!(stderr.contains(key), "{key} named: {stderr}");
        assert!(!stderr.contains("hidden"), "password not echoed: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xindao.toml");
    std::fs::write(&file, "store = \"sqlite:///var/lib/x.db\"\n").unwrap();
    let output = xindao(&["config", "-c", file.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("store must be"), "{stderr}");
}

/// docs/configuration.md is `xindao config --markdown`'s output, checked in: regenerate it when a key changes.
#[test]
fn the_configuration_reference_is_generated() {
    let output = xindao(&["config", "--markdown"], &[("XINDAO_LISTEN", "0.0.0.0:1")]);
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "docs/configuration.md differs from `xindao config --markdown`; regenerate it with\n  \
         cargo run -q -p xindao -- config --markdown > docs/configuration.md"
    );
    assert!(generated.starts_with("<!-- Generated by `xindao config --markdown`"));
    for row in [
        "| `heartbeat_ms` | `XINDAO_HEARTBEAT_MS` | `--heartbeat-ms` | `15000` |",
        "| `commit_batch_max` | `XINDAO_COMMIT_BATCH_MAX` | `--commit-batch-max` | `512` |",
        "| `wechat_secret` | `XINDAO_WECHAT_SECRET` | `--wechat-secret` | unset |",
    ] {
        assert!(generated.contains(row), "{row}");
    }
}
