//! The command line (SPEC §1): exit codes and messages a user relies on.

mod support;

use std::process::Command;

use support::*;

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn valid_config(dir: &std::path::Path) -> String {
    prepare_dir(dir);
    config_text(
        dir,
        1,
        2,
        "127.0.0.1:3".parse().unwrap(),
        &Options::default(),
    )
}

#[test]
fn check_config_accepts_a_valid_config_and_the_demo_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, valid_config(dir.path())).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/authgate.yaml");
    let out = Command::new(BIN)
        .args(["check-config", "-c", demo])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configs_exit_2_listing_every_key_path_without_backtraces() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_config(dir.path());
    let bad = good
        .replace("idle_timeout: 60s", "idle_timeout: soon")
        .replace("policy: allow", "policy: sometimes")
        .replace("  threads: 2\n", "  threads: 2\n  no_such_key: true\n")
        .replace(
            "upstream: http://127.0.0.1:3",
            "upstream: http://no-such-host.invalid:3",
        );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    for cmd in ["check-config", "run"] {
        let (code, out) = run(&[cmd, "-c", path.to_str().unwrap()], None);
        assert_eq!(code, 2, "{cmd}: {out}");
        for key in [
            "auth.idle_timeout: ",
            "auth.concurrent_sessions.policy: ",
            "server.no_such_key: ",
            "routes[0].upstream: ",
        ] {
            assert!(
                out.contains(&format!("bad.yaml: {key}")),
                "{cmd} does not report {key}:\n{out}"
            );
        }
        assert!(
            !out.contains("panicked") && !out.contains("RUST_BACKTRACE"),
            "{out}"
        );
    }
}

#[test]
fn broken_files_named_by_the_config_are_reported_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_config(dir.path());
    std::fs::write(dir.path().join("weak.secret"), "tooshort").unwrap();
    std::fs::write(
        dir.path().join("users.yaml"),
        "users:\n  - username: 'bad name'\n    password_hash: plain\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let bad = good
        .replace(
            &format!("{d}/certs/tls-cert.pem"),
            &format!("{d}/missing.pem"),
        )
        .replace("algorithm: EdDSA", "algorithm: HS256")
        .replace(
            &format!("signing_key: {d}/certs/jwt-signing-key.pem"),
            &format!("secret_file: {d}/weak.secret"),
        );
    let path = dir.path().join("files.yaml");
    std::fs::write(&path, bad).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 2, "{out}");
    for needle in [
        "tls.cert: cannot read",
        "auth.jwt.secret_file: ",
        "weak secret",
        "users.yaml: users[0].username",
        "users[0].password_hash",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
}

#[test]
fn unbuilt_features_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let text = valid_config(dir.path())
        + "session_store:\n  kind: redis\n  redis_url: redis://127.0.0.1:6379\n";
    let path = dir.path().join("redis.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(
        out.contains("session_store.kind: `redis` is not built yet"),
        "{out}"
    );
}

#[test]
fn missing_config_file_and_bad_arguments_exit_2() {
    let (code, out) = run(&["check-config", "-c", "/nonexistent/authgate.yaml"], None);
    assert_eq!(code, 2);
    assert!(
        out.contains("/nonexistent/authgate.yaml: cannot read the file"),
        "{out}"
    );
    let (code, _) = run(&["frobnicate"], None);
    assert_eq!(code, 2);
    let (code, out) = run(&["--version"], None);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn hash_password_prints_an_argon2id_phc_string_that_verifies() {
    let (code, out) = run(&["hash-password"], Some("s3cret pass\n"));
    assert_eq!(code, 0, "{out}");
    let phc = out.trim();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    use argon2::password_hash::PasswordVerifier;
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret pass", phc)
        .is_ok());
    let (code, _) = run(&["hash-password"], Some("\n"));
    assert_eq!(code, 2, "an empty password is refused");
}

#[test]
fn gen_keys_writes_three_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("k");
    let (code, out) = run(&["gen-keys", "--dir", d.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    for f in ["tls-cert.pem", "tls-key.pem", "jwt-signing-key.pem"] {
        assert!(d.join(f).exists(), "{f}");
    }
    let before = std::fs::read(d.join("jwt-signing-key.pem")).unwrap();
    let (code, out) = run(&["gen-keys", "--dir", d.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(out.contains("refusing to overwrite"), "{out}");
    assert_eq!(
        std::fs::read(d.join("jwt-signing-key.pem")).unwrap(),
        before
    );
}

#[test]
fn a_taken_port_is_a_clear_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    prepare_dir(dir.path());
    let text = config_text(
        dir.path(),
        port,
        free_port(),
        "127.0.0.1:3".parse().unwrap(),
        &Options::default(),
    );
    let path = dir.path().join("taken.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, out) = run(&["run", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("server.listen: cannot listen on 127.0.0.1:{port}")),
        "{out}"
    );
}

#[test]
fn a_tls_key_that_does_not_fit_the_certificate_is_caught_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_config(dir.path());
    let other = dir.path().join("other");
    let (code, _) = run(&["gen-keys", "--dir", other.to_str().unwrap()], None);
    assert_eq!(code, 0);
    let d = dir.path().display().to_string();
    let bad = good.replace(
        &format!("{d}/certs/tls-key.pem"),
        &format!("{d}/other/tls-key.pem"),
    );
    let path = dir.path().join("mismatch.yaml");
    std::fs::write(&path, bad).unwrap();
    for cmd in ["check-config", "run"] {
        let (code, out) = run(&[cmd, "-c", path.to_str().unwrap()], None);
        assert_eq!(code, 2, "{cmd}: {out}");
        assert!(
            out.contains("tls.key: ") && out.contains("does not fit the certificate"),
            "{cmd}: {out}"
        );
        assert!(!out.contains("panicked"), "{out}");
    }
    let dir_as_cert = good.replace(&format!("{d}/certs/tls-cert.pem"), &format!("{d}/certs"));
    std::fs::write(&path, dir_as_cert).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(out.contains("is a directory"), "{out}");
}

#[test]
fn user_file_mistakes_get_messages_that_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_config(dir.path());
    let huge = "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0$0bWcFSBKsPp2NRvHsLzh3s9cJ0NB4zX9rCsAyaRgx5w";
    std::fs::write(
        dir.path().join("users.yaml"),
        format!("users:\n  - username: off\n    password_hash: \"{huge}\"\n"),
    )
    .unwrap();
    let path = dir.path().join("u.yaml");
    std::fs::write(&path, good).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(
        out.contains("users[0].username: expected a string, found the boolean false")
            && out.contains("quote"),
        "{out}"
    );
    assert!(!out.contains("`` is not a username"), "{out}");
    assert!(
        out.contains("users[0].password_hash: ") && out.contains("m=4294967295"),
        "{out}"
    );
}

#[test]
fn absurd_durations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = valid_config(dir.path())
        .replace("idle_timeout: 60s", "idle_timeout: 18446744073709552s")
        .replace("access_token_ttl: 60s", "access_token_ttl: 500000000y");
    let path = dir.path().join("d.yaml");
    std::fs::write(&path, bad).unwrap();
    let (code, out) = run(&["check-config", "-c", path.to_str().unwrap()], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("auth.idle_timeout: ") && out.contains("auth.access_token_ttl: "),
        "{out}"
    );
}
