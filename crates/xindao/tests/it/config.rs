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
