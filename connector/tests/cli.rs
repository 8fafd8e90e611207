//! The `hanse` binary as an operator uses it: `init`, then `run`, then probes over HTTP; bad configurations exit
//! non-zero with one line naming the problem.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, hanse};

/// `hanse init` in `dir` with free ports; returns (public port, management port, API key).
fn init(dir: &Path) -> (u16, u16, String) {
    let done = support::init(dir);
    (done.public, done.management, done.api_key)
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str, api_key: Option<&str>) -> Option<u16> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut request = client.get(url);
    if let Some(key) = api_key {
        request = request.header("X-Api-Key", key);
    }
    request.send().ok().map(|r| r.status().as_u16())
}

fn wait_ready(url: &str, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(url, None) == Some(200) {
            return;
        }
        if let Some(status) = process.0.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            process.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("hanse exited with {status} before it was ready: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} not ready within 30 s");
}

/// Runs `command`, which must fail with one line on stderr; answers the line.
fn one_line_failure(mut command: Command) -> String {
    let output: Output = command.output().unwrap();
    assert!(
        !output.status.success(),
        "{command:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "{command:?}: expected one line, got: {stderr}");
    stderr
}

fn failing_run(dir: &Path, envs: &[(&str, &str)]) -> String {
    let mut command = hanse(dir, &["run"]);
    command.envs(envs.iter().copied());
    one_line_failure(command)
}

#[test]
fn init_then_run_serves_both_listeners_and_guards_management() {
    let dir = tempfile::tempdir().unwrap();
    let (public, management, api_key) = init(dir.path());
    let mut process =
        Process(hanse(dir.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);
    assert_eq!(get(&format!("http://127.0.0.1:{management}/health/ready"), None), Some(200));
    assert_eq!(get(&format!("http://127.0.0.1:{public}/health/live"), None), Some(200));
    let about = format!("http://127.0.0.1:{management}/management/connector");
    assert_eq!(get(&about, None), Some(401));
    assert_eq!(get(&about, Some("wrong-key-wrong-key")), Some(401));
    assert_eq!(get(&about, Some(&api_key)), Some(200));
    assert!(dir.path().join("data/hanse.db").exists(), "SQLite database created on first start");

    // SIGTERM: a graceful stop with a zero exit status.
    Command::new("kill").args(["-TERM", &process.0.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (public, management, file_key) = init(dir.path());
    let env_key = "an-api-key-from-the-environment";
    let mut process = Process(
        hanse(dir.path(), &["--log-format", "json", "run"])
            .env("HANSE_MANAGEMENT_API_KEY", env_key)
            // Another program's variables with the same prefix do not stop start-up.
            .env("HANSE_HOME", "/opt/hanse")
            .env("HANSE_BIN", "/opt/hanse/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);
    let about = format!("http://127.0.0.1:{management}/management/connector");
    assert_eq!(get(&about, Some(&file_key)), Some(401));
    assert_eq!(get(&about, Some(env_key)), Some(200));
}

#[test]
fn an_unknown_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let config = std::fs::read_to_string(dir.path().join("hanse.toml")).unwrap();
    std::fs::write(dir.path().join("hanse.toml"), config.replace("[store]\n", "[store]\ndatabse_url = \"x\"\n"))
        .unwrap();
    let error = failing_run(dir.path(), &[]);
    assert!(error.contains("store.databse_url") && error.contains("unknown key"), "{error}");
}

#[test]
fn an_unknown_environment_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let error = failing_run(dir.path(), &[("HANSE_PUBLIC_BINDD", "127.0.0.1:1")]);
    assert!(error.contains("public.bindd"), "{error}");
}

#[test]
fn a_misspelt_section_in_the_environment_stops_start_up_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let error = failing_run(dir.path(), &[("HANSE_MANAGMENT_API_KEY", "a-key-with-a-typo-in-its-name")]);
    assert!(error.contains("HANSE_MANAGMENT_API_KEY") && error.contains("HANSE_MANAGEMENT_API_KEY"), "{error}");
}

#[test]
fn an_invalid_address_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let error = failing_run(dir.path(), &[("HANSE_MANAGEMENT_BIND", "not-an-address")]);
    assert!(error.contains("management.bind"), "{error}");
}

#[test]
fn an_unreachable_database_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let port = free_port(); // nothing listens here
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/test");
    let error = failing_run(dir.path(), &[("HANSE_STORE_DATABASE_URL", &url)]);
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("secret"), "the password must not be printed: {error}");
}

#[test]
fn a_missing_configuration_file_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = failing_run(dir.path(), &[]);
    assert!(error.contains("hanse init"), "{error}");
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let output = hanse(dir.path(), &["init"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to overwrite"));
}

#[test]
fn version_and_help_with_examples() {
    let output = hanse(Path::new("."), &["--version"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("hanse {}", env!("CARGO_PKG_VERSION")));
    let commands: &[&[&str]] = &[
        &[],
        &["run"],
        &["init"],
        &["demo"],
        &["catalog"],
        &["negotiate"],
        &["fetch"],
        &["search"],
        &["synth"],
        &["policy", "create"],
        &["policy", "validate"],
        &["policy", "explain"],
        &["offer", "create"],
        &["approvals", "list"],
        &["approvals", "approve"],
        &["approvals", "reject"],
        &["api-keys", "create"],
        &["api-keys", "list"],
        &["api-keys", "rotate"],
        &["api-keys", "revoke"],
        &["apps", "issue"],
        &["apps", "list"],
        &["apps", "revoke"],
        &["dataset", "ingest"],
        &["dataset", "list"],
        &["job", "run"],
        &["audit", "verify"],
        &["audit", "show"],
        &["peers", "list"],
        &["peers", "add"],
        &["broker", "status"],
        &["credentials", "issue"],
        &["self-description", "verify"],
    ];
    for command in commands {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let output = hanse(Path::new("."), &args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Examples:"), "{args:?} has no examples");
    }
}

#[test]
fn credentials_are_issued_imported_listed_and_revoked_and_keys_rotate_from_the_command_line() {
    let (issuer_dir, holder_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    init(issuer_dir.path());
    let (holder_port, _, _) = init(holder_dir.path());
    let holder = format!("did:web:localhost%3A{holder_port}");
    let run = |dir: &Path, args: &[&str]| -> Output {
        let output = hanse(dir, args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    };

    let issued = run(
        issuer_dir.path(),
        &[
            "credentials",
            "issue",
            "--type",
            "MembershipCredential",
            "--subject",
            &holder,
            "--claims",
            r#"{"membership": "active"}"#,
        ],
    );
    let jwt = String::from_utf8(issued.stdout).unwrap();
    assert_eq!(jwt.trim().split('.').count(), 3, "a compact JWT: {jwt}");
    let id = String::from_utf8_lossy(&issued.stderr).trim().trim_start_matches("Issued ").to_owned();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    std::fs::write(holder_dir.path().join("member.jwt"), &jwt).unwrap();

    let imported = run(holder_dir.path(), &["credentials", "import", "member.jwt"]);
    assert!(String::from_utf8_lossy(&imported.stdout).contains(&id));
    let listed = run(holder_dir.path(), &["credentials", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("MembershipCredential"));
    // Someone else's credential is refused by name, and nothing is stored.
    let foreign = hanse(issuer_dir.path(), &["credentials", "import", "../x.jwt"]).output().unwrap();
    assert!(!foreign.status.success());
    std::fs::write(issuer_dir.path().join("member.jwt"), &jwt).unwrap();
    let not_ours = hanse(issuer_dir.path(), &["credentials", "import", "member.jwt"]).output().unwrap();
    assert!(!not_ours.status.success());
    assert!(String::from_utf8_lossy(&not_ours.stderr).contains("not"), "{}", String::from_utf8_lossy(&not_ours.stderr));

    let revoked = run(issuer_dir.path(), &["credentials", "revoke", &id]);
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("bit 0"));
    let listed = run(issuer_dir.path(), &["credentials", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("(revoked)"));
    let unknown = hanse(issuer_dir.path(), &["credentials", "revoke", "urn:uuid:never-issued"]).output().unwrap();
    assert!(!unknown.status.success());

    let before = std::fs::read(holder_dir.path().join("keys/participant.pem")).unwrap();
    run(holder_dir.path(), &["keys", "rotate"]);
    let after = std::fs::read(holder_dir.path().join("keys/participant.pem")).unwrap();
    assert_ne!(before, after);
    let retired: Vec<_> = std::fs::read_dir(holder_dir.path().join("keys/retired")).unwrap().collect();
    assert_eq!(retired.len(), 1);
}

#[test]
fn audit_verify_accepts_an_export_and_fails_with_the_position_when_an_entry_is_altered() {
    let dir = tempfile::tempdir().unwrap();
    let (public, management, api_key) = init(dir.path());
    let mut process =
        Process(hanse(dir.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{management}/management/v3");
    for id in ["cohort-a", "cohort-b"] {
        let asset = serde_json::json!({"@id": id, "properties": {"title": id},
            "dataAddress": {"type": "HttpData", "baseUrl": "https://backend.example/data"}});
        let created = client.post(format!("{base}/assets")).header("X-Api-Key", &api_key).json(&asset).send().unwrap();
        assert!(created.status().is_success(), "{}", created.text().unwrap());
    }
    let export =
        client.get(format!("{base}/audit/export")).header("X-Api-Key", &api_key).send().unwrap().text().unwrap();
    let file = dir.path().join("log.jsonl");
    std::fs::write(&file, &export).unwrap();
    let verified = hanse(dir.path(), &["audit", "verify", "log.jsonl"]).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("OK: 2 entries"));

    // The second entry's `id` changes by one letter: exit status 1, and entry 1 is named.
    std::fs::write(&file, export.replace("\"id\":\"cohort-b\"", "\"id\":\"cohort-c\"")).unwrap();
    let failed = hanse(dir.path(), &["audit", "verify", "log.jsonl"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.starts_with("FAILED: entry 1:"), "{stdout}");
    let missing = hanse(dir.path(), &["audit", "verify", "nothing.jsonl"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));

    // The database itself, read only while the connector runs, with a head the auditor kept.
    let head = client.get(format!("{base}/audit/head")).header("X-Api-Key", &api_key).send().unwrap().text().unwrap();
    std::fs::write(dir.path().join("head.json"), head).unwrap();
    let stored = hanse(dir.path(), &["audit", "verify", "--store", "--head", "head.json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&stored.stdout);
    assert!(stored.status.success(), "{stdout} {}", String::from_utf8_lossy(&stored.stderr));
    assert!(stdout.starts_with("OK: the stored log of did:web:") && stdout.contains("holds 2 entries"), "{stdout}");

    // Someone with access to the database re-indexes entry 1 under another dataset: the offline check names it, and
    // the connector, started again, finds it, says so and refuses every change the log would record.
    drop(process);
    let database = format!("sqlite://{}", dir.path().join("data/hanse.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&database).await.unwrap();
        sqlx::query("UPDATE audit_entries SET dataset = 'cohort-z' WHERE seq = 1").execute(&pool).await.unwrap();
        pool.close().await;
    });
    let failed = hanse(dir.path(), &["audit", "verify", "--store"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.starts_with("FAILED: entry 1: its indexed dataset (cohort-z)"), "{stdout}");
    let _process = Process(hanse(dir.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let answer = client.get(format!("http://127.0.0.1:{public}/health/ready")).send().ok();
        if let Some(answer) = answer.filter(|a| a.status().as_u16() == 503) {
            let body: serde_json::Value = answer.json().unwrap();
            if body["status"] == "unavailable" {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "the connector did not report the altered log");
        std::thread::sleep(Duration::from_millis(50));
    };
    let reason = ready["components"]["audit"]["reason"].as_str().unwrap();
    assert!(reason.contains("entry 1: its indexed dataset"), "{ready:#}");
    let asset = serde_json::json!({"@id": "cohort-d", "properties": {"title": "d"},
        "dataAddress": {"type": "HttpData", "baseUrl": "https://backend.example/data"}});
    let refused = client.post(format!("{base}/assets")).header("X-Api-Key", &api_key).json(&asset).send().unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.text().unwrap().contains("self-check"));
    let entries = client.get(format!("{base}/audit/entries")).header("X-Api-Key", &api_key).send().unwrap();
    assert_eq!(entries.status().as_u16(), 200, "a sealed log is still read");
}

#[test]
fn synth_then_ingest_imports_a_cohort_and_a_bad_file_is_refused_naming_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (public, _, _) = init(dir.path());
    let synth =
        hanse(dir.path(), &["synth", "--rows", "300", "--site", "1", "--out", "register.csv"]).output().unwrap();
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    assert!(dir.path().join("register.schema.json").exists());
    let mut process =
        Process(hanse(dir.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);

    let ingest = |file: &str| {
        hanse(
            dir.path(),
            &["dataset", "ingest", file, "--id", "register", "--schema", "register.schema.json", "--title", "Register"],
        )
        .output()
        .unwrap()
    };
    let done = ingest("register.csv");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("Ingested 300 rows into dataset register"));

    // Two bad rows: both named, nothing imported, one line on stderr, non-zero exit.
    let mut text = std::fs::read_to_string(dir.path().join("register.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let broken: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| match i {
            5 => line.replacen(",F,", ",X,", 1).replacen(",M,", ",X,", 1),
            9 => line
                .split(',')
                .map(|cell| if cell == lines[9].split(',').nth(1).unwrap() { "old" } else { cell })
                .collect::<Vec<_>>()
                .join(","),
            _ => (*line).to_owned(),
        })
        .collect();
    text = broken.join("\n");
    std::fs::write(dir.path().join("broken.csv"), text).unwrap();
    let refused = ingest("broken.csv");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 6, column `sex`") && stderr.contains("line 10, column `age`"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
}

/// `hanse args` in `dir` that must succeed; answers its stdout.
fn succeeds(dir: &Path, args: &[&str]) -> String {
    let output = hanse(dir, args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// `hanse args` in `dir` that must fail with one line on stderr; answers the line.
fn fails(dir: &Path, args: &[&str]) -> String {
    one_line_failure(hanse(dir, args))
}

#[test]
fn an_operator_publishes_and_a_consumer_browses_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (public, _, _) = init(dir.path());
    let mut process =
        Process(hanse(dir.path(), &["run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);
    let path = dir.path();

    assert!(succeeds(path, &["dataset", "list"]).contains("No datasets yet"));
    succeeds(path, &["synth", "--rows", "60", "--out", "register.csv"]);
    succeeds(path, &["dataset", "ingest", "register.csv", "--id", "register", "--title", "Diabetes register"]);
    let listed = succeeds(path, &["dataset", "list"]);
    assert!(listed.contains("register") && listed.contains("Diabetes register") && listed.contains("60"), "{listed}");

    // Policies: stored, validated, explained both ways.
    std::fs::write(path.join("research.json"), r#"{"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]}"#).unwrap();
    std::fs::write(
        path.join("open.json"),
        r#"{"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use"}]}"#,
    )
    .unwrap();
    assert!(succeeds(path, &["policy", "create", "research", "research.json"]).contains("research is valid"));
    succeeds(path, &["policy", "create", "open", "open.json"]);
    succeeds(path, &["policy", "validate", "research"]);
    let denied = succeeds(path, &["policy", "explain", "research", "--purpose", "dpv:CommercialResearch"]);
    assert!(denied.starts_with("DENIED") && denied.contains("purpose isA DUO:0000042"), "{denied}");
    assert!(denied.contains("was dpv:CommercialResearch"), "the trace shows what the constraint saw: {denied}");
    let permitted = succeeds(path, &["policy", "explain", "research", "--purpose", "DUO:0000007", "--json"]);
    let permitted: serde_json::Value = serde_json::from_str(&permitted).unwrap();
    assert_eq!(permitted["decision"]["permitted"], true, "{permitted:#}");
    assert!(fails(path, &["policy", "validate", "missing"]).contains("not found"));
    assert!(fails(path, &["policy", "create", "bad", "nowhere.json"]).contains("nowhere.json"));

    // An offer, visible in the DSP catalogue (this connector asks itself, with its own identity).
    let offered = succeeds(
        path,
        &["offer", "create", "register-offer", "--access", "open", "--terms", "research", "--dataset", "register"],
    );
    assert!(offered.contains("Offered register under research"), "{offered}");
    let peer = format!("http://127.0.0.1:{public}");
    let catalogue = succeeds(path, &["catalog", "--peer", &peer]);
    assert!(catalogue.contains("register") && catalogue.contains("use if purpose isA DUO:0000042"), "{catalogue}");
    let filtered = succeeds(path, &["catalog", "--peer", &peer, "--query", "cardiology"]);
    assert!(filtered.contains("no dataset"), "{filtered}");

    // A steward's key, and a token for an app that reads the register, each shown once, listed, revoked.
    let made =
        succeeds(path, &["api-keys", "create", "Data steward", "--role", "steward", "--id", "steward", "--json"]);
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    assert!(made["key"].as_str().unwrap().starts_with("hmk_"), "{made:#}");
    let keys = succeeds(path, &["api-keys", "list"]);
    assert!(keys.contains("steward") && keys.contains("VALID") && !keys.contains("hmk_"), "{keys}");
    assert!(fails(path, &["api-keys", "create", "Root", "--role", "root"]).contains("role"));
    let issued = succeeds(
        path,
        &["apps", "issue", "Companion", "--dataset", "register", "--action", "read", "--purpose", "DUO:0000007"],
    );
    assert!(issued.contains("hat_") && issued.contains("Authorization: Bearer"), "{issued}");
    let token_id = issued.split('`').nth(1).unwrap().to_owned();
    let apps = succeeds(path, &["apps", "list"]);
    assert!(apps.contains("Companion") && apps.contains("register") && apps.contains("VALID"), "{apps}");
    assert!(succeeds(path, &["apps", "revoke", &token_id]).contains("Revoked"));
    assert!(succeeds(path, &["apps", "list"]).contains("REVOKED"));
    assert!(succeeds(path, &["api-keys", "revoke", "steward"]).contains("Revoked"));
    assert!(fails(path, &["apps", "issue", "Nothing", "--dataset", "missing", "--action", "read"]).contains("missing"));

    // Nothing waits; unknown offers and processes are one clear line.
    assert!(succeeds(path, &["approvals", "list"]).contains("Nothing waits"));
    assert!(fails(path, &["approvals", "approve", "urn:uuid:none"]).contains("no negotiation or transfer"));
    assert!(fails(path, &["negotiate", "--peer", &peer, "--offer", "nothing-like-this"]).contains("offers no"));
}

#[test]
fn a_dataset_waits_for_a_second_key_before_it_is_published_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (public, _, _) = init(dir.path());
    let path = dir.path();
    let mut run = hanse(path, &["run"]);
    run.env("HANSE_CATALOG_PUBLICATION_APPROVAL", "true").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut process = Process(run.spawn().unwrap());
    wait_ready(&format!("http://127.0.0.1:{public}/health/ready"), &mut process);

    succeeds(path, &["synth", "--rows", "40", "--out", "register.csv"]);
    succeeds(path, &["dataset", "ingest", "register.csv", "--id", "register", "--title", "Diabetes register"]);
    let waiting = succeeds(path, &["approvals", "list"]);
    assert!(
        waiting.contains("publication") && waiting.contains("register") && waiting.contains("management"),
        "{waiting}"
    );
    // The operator's key made it, so it cannot approve it; an approver's key can.
    assert!(fails(path, &["approvals", "approve", "register"]).contains("second key"));
    let approver = succeeds(path, &["api-keys", "create", "Head of research data", "--role", "approver", "--json"]);
    let approver: serde_json::Value = serde_json::from_str(&approver).unwrap();
    let key = approver["key"].as_str().unwrap();
    let approved = succeeds(path, &["approvals", "approve", "register", "--api-key", key]);
    assert!(approved.contains("Publication of register: approved"), "{approved}");
    assert!(succeeds(path, &["approvals", "list"]).contains("Nothing waits"));
}

#[test]
fn the_demo_runs_from_the_command_line_and_exits_zero() {
    let output = hanse(Path::new("."), &["demo", "--seed", "3"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for line in ["[5] the auditor verifies", "Summary", "found       3 datasets", "refused     Ziekenhuis West"] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
}
