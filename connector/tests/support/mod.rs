//! What the tests that drive the `hanse` binary share: the binary, free ports, a clean command, and `hanse init`.
// Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

pub const HANSE: &str = env!("CARGO_BIN_EXE_hanse");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `hanse args` in `dir`, without the caller's `HANSE_*` and `RUST_LOG` settings.
pub fn hanse(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(HANSE);
    command.current_dir(dir).args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("HANSE_") {
            command.env_remove(key);
        }
    }
    command
}

/// What `hanse init` made.
pub struct Initialised {
    pub public: u16,
    pub management: u16,
    pub api_key: String,
    pub participant: String,
}

/// `hanse init` in `dir` with free ports.
pub fn init(dir: &Path) -> Initialised {
    let (public, management) = (free_port(), free_port());
    let (public_bind, management_bind) = (format!("127.0.0.1:{public}"), format!("127.0.0.1:{management}"));
    let output =
        hanse(dir, &["init", "--public-bind", &public_bind, "--management-bind", &management_bind]).output().unwrap();
    assert!(output.status.success(), "init failed: {}", String::from_utf8_lossy(&output.stderr));
    let config = std::fs::read_to_string(dir.join("hanse.toml")).unwrap();
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{key} in hanse.toml"))
    };
    Initialised { public, management, api_key: value("api_key"), participant: value("id") }
}
