//! The audit trail end to end: nothing acknowledged is lost across `kill -9`, tampering is
//! found by `partner-gateway audit verify`, admin search serves the trail.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_tests::{GatewayProcess, TestGateway};

/// Interaction ids of every record in an audit directory.
fn recorded_interaction_ids(dir: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("segment-") && name.ends_with(".log")) {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a torn final line is never an acknowledged record
            };
            if let Some(id) = value["rec"]["interaction_id"].as_str() {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

fn verify(root: &Path) -> std::process::Output {
    Command::new(GatewayProcess::binary())
        .args(["audit", "verify"])
        .arg(root.join("data/audit"))
        .arg("--config")
        .arg(root.join("partner-config"))
        .output()
        .unwrap()
}

/// kill -9 at a random moment, 20 times: every request that got a 2xx is in the trail
/// afterwards, and the trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_request_survives_kill_9() {
    let root = gateway_tests::process::ProcessRoot::new().await;
    let mut acknowledged = HashSet::new();
    let started = Instant::now();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..20 {
        let mut gateway = root.start();
        let mut client = gateway_tests::partner_client(
            root.path(),
            gateway.partner_addr,
            "demo-bank",
            "products:read",
        )
        .await;
        // Kill after a pseudo-random number of acknowledged requests (1..=40).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 1 + (seed % 40) as usize;
        let mut sent = 0;
        loop {
            let id = format!("r{round}-{sent}");
            match client
                .get_with("/v1/products", &[("x-fapi-interaction-id", &id)])
                .await
            {
                Ok(response) if response.status.is_success() => {
                    acknowledged.insert(id);
                }
                Ok(response) => panic!("round {round}: {} before the kill", response.status),
                Err(_) => break,
            }
            sent += 1;
            if sent == kill_after {
                // Kill while the next request is in flight.
                let next = format!("r{round}-{sent}");
                let pending = tokio::spawn(async move {
                    let outcome = client
                        .get_with("/v1/products", &[("x-fapi-interaction-id", &next)])
                        .await;
                    (
                        next,
                        outcome.map(|r| r.status.is_success()).unwrap_or(false),
                    )
                });
                tokio::time::sleep(Duration::from_micros(seed % 2000)).await;
                gateway.kill9();
                let (next, ok) = pending.await.unwrap();
                if ok {
                    acknowledged.insert(next);
                }
                break;
            }
        }
        drop(gateway);
        let recorded = recorded_interaction_ids(&root.path().join("data/audit"));
        let missing: Vec<_> = acknowledged.difference(&recorded).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but not in the trail: {missing:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "kill -9 rounds took too long"
        );
    }
    // After the last kill: a restart reopens the trail, and the whole trail verifies.
    let gateway = root.start();
    drop(gateway);
    let output = verify(root.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("signatures verified"));
    assert!(acknowledged.len() >= 20);
}

#[tokio::test]
async fn audit_verify_reports_an_edited_record_with_its_location() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    for _ in 0..5 {
        assert_eq!(
            client.get("/v1/products?limit=1").await.unwrap().status,
            200
        );
    }
    let kept = gateway.stop().await;
    let root = kept.path().to_owned();
    let clean = verify(&root);
    assert!(
        clean.status.success(),
        "{}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );

    let segment = std::fs::read_dir(root.join("data/audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let edited = text.replacen("\"status\":200", "\"status\":404", 1);
    assert_ne!(text, edited);
    std::fs::write(&segment, edited).unwrap();
    let broken = verify(&root);
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stdout);
    assert!(
        report.contains("BROKEN") && report.contains("segment-"),
        "{report}"
    );
}

#[tokio::test]
async fn refused_and_served_requests_are_both_recorded() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    client
        .get_with(
            "/v1/products?limit=1",
            &[("x-fapi-interaction-id", "served-1")],
        )
        .await
        .unwrap();
    client.set_token(None);
    client
        .get_with("/v1/products", &[("x-fapi-interaction-id", "refused-1")])
        .await
        .unwrap();
    let page = gateway
        .admin(
            http::Method::GET,
            "/admin/v1/audit?partner=demo-bank&limit=50",
            None,
        )
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let records = page.json()["records"].as_array().unwrap().clone();
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["interaction_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not found"))
    };
    let served = by_id("served-1");
    assert_eq!(served["status"], 200);
    assert_eq!(served["decision"], "allow");
    assert_eq!(served["route"], "products");
    assert!(served["scope"].as_str().unwrap().contains("products:read"));
    let refused = by_id("refused-1");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["reason"], "invalid-token");
}
