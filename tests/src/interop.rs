//! Other people's software, installed from the package registries at pinned versions into a cache folder shared by
//! runs on the same machine (`$HANSE_INTEROP_CACHE`, default `~/.cache/hanse-interop`): the PyPI `edc-client` and
//! `pyld` (`interop/requirements.txt`), and the npm `@think-it-labs/edc-connector-client` (`interop/package.json` and
//! its lock file). A folder is named after the SHA-256 of what it installs, so a changed pin installs afresh.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `tests/interop/`: the journeys and the pins.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn cache() -> PathBuf {
    match std::env::var_os("HANSE_INTEROP_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/hanse-interop"),
    }
}

/// The first 16 hex digits of the SHA-256 of `files`' contents.
fn digest(files: &[&str]) -> String {
    let mut hasher = openssl::sha::Sha256::new();
    for file in files {
        hasher.update(&std::fs::read(folder().join(file)).unwrap_or_else(|e| panic!("read interop/{file}: {e}")));
    }
    hasher.finish()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `command` to its end, answering its standard output; panics with all it printed on failure.
fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Python with `interop/requirements.txt` installed (a virtual environment made once per pin set).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| python_with("requirements.txt")).clone()
}

/// A Python with `interop/api-requirements.txt` installed: openapi-spec-validator and schemathesis.
pub fn api_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| python_with("api-requirements.txt")).clone()
}

/// A Python with `interop/deploy-requirements.txt` installed: kubernetes-validate.
pub fn deploy_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| python_with("deploy-requirements.txt")).clone()
}

/// A Python with `interop/storage-requirements.txt` installed: moto's S3-compatible server.
pub fn storage_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| python_with("storage-requirements.txt")).clone()
}

/// An S3-compatible server (moto, from PyPI) on a free loopback port, with one bucket; stopped when dropped. It takes
/// any access key and checks the signature's form, as a test server does.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    child: std::process::Child,
}

impl S3Server {
    pub async fn start(bucket: &str) -> S3Server {
        let python = storage_python();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto's S3 server");
        let server = S3Server { endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_owned(), child };
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match client.put(format!("{}/{bucket}", server.endpoint)).send().await {
                Ok(response) if response.status().is_success() => return server,
                Ok(response) => panic!("the S3 server refused the bucket {bucket}: {}", response.status()),
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(error) => panic!("the S3 server did not start: {error}"),
            }
        }
    }

    /// A client of the bucket, independent of Hanse's own, for what a test puts there or checks.
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id("hanse-test")
            .with_secret_access_key("hanse-test-secret")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("an S3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A virtual environment with the pins of `interop/<requirements>` installed, made once per pin set; its Python.
fn python_with(requirements: &str) -> PathBuf {
    let venv = cache().join(format!("venv-{}", digest(&[requirements])));
    let python = venv.join("bin/python");
    if !venv.join("installed").exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv");
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                .arg(folder().join(requirements)),
            &format!("pip install -r tests/interop/{requirements}"),
        );
        std::fs::write(venv.join("installed"), b"").expect("mark the environment installed");
    }
    python
}

/// Runs `program` with `args` to its end; answers whether it succeeded and all it printed (standard output, then
/// standard error).
pub fn outcome(program: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program:?}: cannot start: {e}"));
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

/// `node_modules` with `interop/package.json` installed as its lock file says (`npm ci`, once per lock file).
pub fn node_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES
        .get_or_init(|| {
            let dir = cache().join(format!("npm-{}", digest(&["package.json", "package-lock.json"])));
            if !dir.join("installed").exists() {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("create the npm folder");
                for file in ["package.json", "package-lock.json"] {
                    std::fs::copy(folder().join(file), dir.join(file)).expect("copy the npm pins");
                }
                run(
                    Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir),
                    "npm ci in the interop cache",
                );
                std::fs::write(dir.join("installed"), b"").expect("mark the modules installed");
            }
            dir.join("node_modules")
        })
        .clone()
}

/// Runs an interop script to its end (with `env`), answering its standard output; panics with its output on failure.
pub fn script(program: &Path, script: &str, args: &[&str], env: &[(String, String)]) -> String {
    let mut command = Command::new(program);
    command.arg(folder().join(script)).args(args);
    if program.ends_with("node") {
        command.env("NODE_PATH", node_modules());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    run(&mut command, &format!("{script} {args:?}"))
}
