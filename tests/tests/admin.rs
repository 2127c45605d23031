//! The admin listener, reloading, `config check` and the `dev` command as a user runs them.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gateway_tests::{GatewayProcess, TestGateway, admin_request};
use http::Method;

#[tokio::test]
async fn admin_api_needs_the_admin_token() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    assert_eq!(bank.get("/v1/products?limit=1").await.unwrap().status, 200);
    for token in [None, Some("wrong-token-wrong-token"), Some("")] {
        let response = admin_request(
            gateway.admin_addr,
            Method::GET,
            "/admin/v1/partners",
            None,
            token,
        )
        .await
        .unwrap();
        response.assert_problem(401, "admin-unauthorized");
        assert!(response.header("www-authenticate").is_some());
    }
    let response = gateway.admin(Method::GET, "/admin/v1/partners", None).await;
    assert_eq!(response.status, 200);
    let ids: Vec<_> = response.json()["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["demo-bank", "demo-fund", "demo-insurer"]);
    let bank = &response.json()["partners"][0];
    assert_eq!(bank["tokens_issued"], 1);
    assert_eq!(
        bank["requests"], 2,
        "the token request and the products request"
    );
    assert_eq!(bank["open_connections"], 1);
    // Probes are open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = admin_request(gateway.admin_addr, Method::GET, path, None, None)
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{path}");
    }
}

#[tokio::test]
async fn readiness_follows_the_upstream() {
    let mut gateway = TestGateway::start().await;
    let ready = admin_request(gateway.admin_addr, Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    gateway.stop_sandbox().await;
    let unready = admin_request(gateway.admin_addr, Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(unready.status, 503);
    assert_eq!(unready.json()["ready"], false);
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_configuration_and_says_why() {
    let gateway = TestGateway::start().await;
    let good = gateway.read_config("partners/demo-bank.yaml");
    gateway.write_config(
        "partners/demo-bank.yaml",
        &good
            .replace("scopes: [tags:read", "scopes: [tags:write")
            .replace("status: active", "status: suspended"),
    );
    let response = gateway.reload().await;
    let problem = response.assert_problem(422, "reload-rejected");
    let errors = problem["errors"].to_string();
    assert!(
        errors.contains("partners/demo-bank.yaml") && errors.contains("tags:write"),
        "{errors}"
    );
    // Still active: the suspension in the rejected file did not apply.
    let mut client = gateway.client("demo-bank").await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn twenty_reloads_during_a_steady_stream_fail_no_request() {
    let gateway = Arc::new(TestGateway::start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for partner in ["demo-bank", "demo-fund"] {
        let mut client = gateway.client(partner).await;
        let (stop, served) = (stop.clone(), served.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get("/v1/products?limit=1").await {
                    Ok(r) if r.status == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(r.status.to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    let bank = gateway.read_config("partners/demo-bank.yaml");
    for i in 0..20 {
        // Alternate a harmless change so every reload really swaps the configuration.
        let limit = if i % 2 == 0 {
            "rate_per_sec: 201"
        } else {
            "rate_per_sec: 200"
        };
        gateway.write_config(
            "partners/demo-bank.yaml",
            &bank.replacen("rate_per_sec: 200", limit, 1),
        );
        let response = gateway.reload().await;
        assert_eq!(response.status, 200, "reload {i}: {:?}", response.body);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(served.load(Ordering::Relaxed) > 20);
}

#[test]
fn config_check_reports_every_problem_with_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    gateway_tests::init();
    gateway_tests::prepare_root(root.path()).unwrap();
    let dir = root.path().join("partner-config");
    let clean = Command::new(GatewayProcess::binary())
        .args(["config", "check", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    let bank = std::fs::read_to_string(dir.join("partners/demo-bank.yaml")).unwrap();
    std::fs::write(
        dir.join("partners/demo-bank.yaml"),
        bank.replace("tags:read", "tags:write"),
    )
    .unwrap();
    std::fs::write(
        dir.join("campaigns/broken.yaml"),
        "id: broken\nname: [unclosed\n",
    )
    .unwrap();
    std::fs::remove_file(root.path().join("certs/dev/ca.pem")).unwrap();
    let broken = Command::new(GatewayProcess::binary())
        .args(["config", "check", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stdout);
    for expected in [
        "partners/demo-bank.yaml:",
        "tags:write",
        "campaigns/broken.yaml:",
        "ca.pem",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing from:\n{report}"
        );
    }
}

/// The README's run command and curl example, as a partner developer would use them, from a
/// directory holding only `partner-config/` (a clean clone: no certs, no data).
#[test]
fn dev_from_a_clean_directory_answers_the_readme_curl_example() {
    let root = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .arg("-r")
        .arg(gateway_tests::repo_root().join("partner-config"))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(copy.success());
    let log = root.path().join("dev.log");
    let mut child = Command::new(GatewayProcess::binary())
        .args([
            "--log-format",
            "json",
            "dev",
            "--partner-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .current_dir(root.path())
        .stdout(std::fs::File::create(root.path().join("dev.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let partner = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = gateway_tests::process::address_after(&text, "partner listener on ") {
            break addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dev did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(root.path().join("certs/dev/ca.pem").exists());
    assert!(root.path().join("data/admin.token").exists());
    let banner = std::fs::read_to_string(root.path().join("dev.out")).unwrap();
    assert!(banner.contains("client_id=demo-bank"), "{banner}");

    // Run the README's example block as written, on the port `dev` bound.
    let readme = std::fs::read_to_string(gateway_tests::repo_root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- curl-example")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the curl example block in README.md");
    let script = block.replace("localhost:8443", &format!("localhost:{}", partner.port()));
    let curl = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&curl.stderr),
        String::from_utf8_lossy(&curl.stdout)
    );
    let body: serde_json::Value = serde_json::from_slice(&curl.stdout).unwrap();
    let products = body["products"].as_array().expect("a products array");
    assert_eq!(products.len(), 2, "the example asks for limit=2");
    drop(guard);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary reloads on SIGHUP and on file changes, as an operator would trigger it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_changes_reload_the_running_binary() {
    let root = gateway_tests::process::ProcessRoot::new().await;
    let gateway = root.start();
    let path = root.config().join("partners/demo-fund.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut fund = gateway_tests::partner_client(
        root.path(),
        gateway.partner_addr,
        "demo-fund",
        "products:read",
    )
    .await;
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);

    // A file change (the directory is watched): the partner is suspended.
    std::fs::write(
        &path,
        original.replace("status: active", "status: suspended"),
    )
    .unwrap();
    let suspended = gateway_tests::eventually_async(Duration::from_secs(10), || async {
        match gateway_tests::partner_client_raw(root.path(), gateway.partner_addr, "demo-fund")
            .await
        {
            Ok(mut client) => client
                .get("/oauth2/token")
                .await
                .map(|r| r.status == 403)
                .unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        suspended,
        "the file change did not take effect:\n{}",
        gateway.log()
    );

    // SIGHUP after restoring the file (the watcher may get there first; either way the
    // reload is logged with its trigger).
    std::fs::write(&path, &original).unwrap();
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(gateway.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let restored = gateway_tests::eventually_async(Duration::from_secs(10), || async {
        match gateway_tests::partner_client_raw(root.path(), gateway.partner_addr, "demo-fund")
            .await
        {
            Ok(mut client) => client
                .get("/oauth2/token")
                .await
                .map(|r| r.status == 405)
                .unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        restored,
        "SIGHUP did not restore the partner:\n{}",
        gateway.log()
    );
    let log = gateway.log();
    assert!(
        log.contains("\"trigger\":\"sighup\""),
        "no SIGHUP reload logged"
    );
    assert!(
        log.contains("\"trigger\":\"file_change\""),
        "no file-change reload logged"
    );
}
