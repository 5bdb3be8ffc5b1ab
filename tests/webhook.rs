//! `hubguard webhook` driven over verified HTTPS exactly as kube-apiserver drives it: an
//! AdmissionReview POSTed on a keep-alive TLS connection, the answer checked field by field.
//! Metrics are parsed from the operations port, never grepped.

use std::time::{Duration, Instant};

use crate::support::{manifest, review_on, Webhook};
use base64::Engine;
use hubguard_testkit::https_client::Protocol;
use hubguard_testkit::review::ReviewRequest;
use serde_json::{json, Value};

const PRIVATE: &str = "policies/tess-private.yaml";
const HUB: &str = "system:serviceaccount:tess-private:hub";
const ALICE: &str = "system:serviceaccount:tess-private:user-alice";
const GOOD_POD: &str = "tests/corpus/pass/z2jh-user-pod-hardened.yaml";

fn create<'a>(object: &'a Value, username: &'a str) -> ReviewRequest<'a> {
    ReviewRequest {
        uid: "11111111-2222-3333-4444-555555555555",
        object: Some(object),
        username,
        namespace: "tess-private",
        ..ReviewRequest::default()
    }
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or("")
}

fn patch_of(response: &Value) -> json_patch::Patch {
    assert_eq!(response["patchType"], "JSONPatch");
    // kube serialises the bytes as a JSON array of numbers, which the API server's decoder
    // accepts as readily as Go's own base64 string form.
    let bytes: Vec<u8> = match &response["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        other => serde_json::from_value(other.clone()).unwrap(),
    };
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn compliant_pod_is_allowed_and_counted() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest(GOOD_POD);
    let response = webhook.review("/validate", &create(&pod, HUB)).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none());

    let metrics = webhook.metrics();
    let allowed = [
        ("operation", "CREATE"),
        ("kind", "Pod"),
        ("decision", "allowed"),
        ("mode", "none"),
    ];
    assert_eq!(
        metrics.sum("hubguard_admission_requests_total", &allowed),
        1.0
    );
    assert_eq!(
        metrics.sum("hubguard_admission_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        metrics.sum(
            "hubguard_policy_info",
            &[("policy", "tess-private"), ("generation", "1")]
        ),
        1.0
    );
}

#[tokio::test]
async fn privileged_pod_is_denied_with_path_and_fix() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest("tests/corpus/attack/privileged-pod.yaml");
    let response = webhook.review("/validate", &create(&pod, ALICE)).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(response["status"]["reason"], "Forbidden");
    let text = message(&response);
    assert!(
        text.starts_with("hubguard policy tess-private denied this Pod:"),
        "{text}"
    );
    assert!(
        text.contains("spec.containers[0].securityContext.privileged:") && text.contains("fix:"),
        "{text}"
    );
    assert!(
        text.len() < 2048,
        "short enough for kubectl: {}",
        text.len()
    );

    let metrics = webhook.metrics();
    let violation = [
        ("policy", "tess-private"),
        ("rule", "privileged"),
        ("namespace", "tess-private"),
        ("pod_class", "user"),
        ("mode", "enforce"),
    ];
    assert_eq!(
        metrics.sum("hubguard_policy_violations_total", &violation),
        1.0
    );
    assert_eq!(
        metrics.sum(
            "hubguard_admission_requests_total",
            &[("decision", "denied"), ("mode", "enforce"), ("kind", "Pod")]
        ),
        1.0
    );
}

#[tokio::test]
async fn warn_and_audit_modes_allow_and_say_so() {
    let webhook = Webhook::start("tests/fixtures/warn-policy.yaml", &[]);
    // Root and host network: restricted's runAsNonRoot is a warning, hostNetwork audited.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "tool", "namespace": "default"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}
    });
    let request = ReviewRequest {
        namespace: "default",
        ..create(&pod, "someone")
    };
    let response = webhook.review("/validate", &request).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("hubguard [runAsUser]")),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.len() <= 256));
    let audit = response["auditAnnotations"]
        .as_object()
        .expect("audit annotations");
    assert!(
        audit["hostNetwork"]
            .as_str()
            .unwrap()
            .contains("spec.hostNetwork"),
        "{audit:?}"
    );

    let metrics = webhook.metrics();
    for mode in ["warn", "audit"] {
        assert!(
            metrics.sum(
                "hubguard_policy_violations_total",
                &[("mode", mode), ("pod_class", "other")]
            ) >= 1.0,
            "{mode} violations counted"
        );
    }
    assert_eq!(
        metrics.sum(
            "hubguard_admission_requests_total",
            &[("decision", "allowed"), ("mode", "warn")]
        ),
        1.0
    );
}

#[tokio::test]
async fn mutate_returns_the_defaults_that_make_a_z2jh_default_pod_pass() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let mut pod = manifest("tests/corpus/pass/z2jh-user-pod-default.yaml");
    let before = webhook.review("/validate", &create(&pod, HUB)).await;
    assert_eq!(
        before["allowed"], false,
        "unmutated, the default pod fails restricted"
    );

    let mutated = webhook.review("/mutate", &create(&pod, HUB)).await;
    assert_eq!(mutated["allowed"], true);
    json_patch::patch(&mut pod, &patch_of(&mutated)).unwrap();
    let after = webhook.review("/validate", &create(&pod, HUB)).await;
    assert_eq!(after["allowed"], true, "{after}");

    // Nothing to default on a pod that already complies, only its identity to record; and
    // UPDATE is never mutated.
    let good = manifest(GOOD_POD);
    let recorded = webhook.review("/mutate", &create(&good, HUB)).await;
    let paths: Vec<String> = patch_of(&recorded)
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels/hubguard.dev~1class",
            "/metadata/labels/hubguard.dev~1tenant"
        ],
        "{recorded}"
    );
    let update = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&good),
        ..create(&pod, HUB)
    };
    assert!(webhook
        .review("/mutate", &update)
        .await
        .get("patch")
        .is_none());
}

#[tokio::test]
async fn update_judges_the_new_object_but_not_metadata_only_changes() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let bad = manifest("tests/corpus/attack/privileged-deployment.yaml");
    let mut safe_deployment = bad.clone();
    safe_deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 1000,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    let allowed = webhook
        .review("/validate", &create(&safe_deployment, ALICE))
        .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");

    let to_privileged = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&safe_deployment),
        ..create(&bad, ALICE)
    };
    let denied = webhook.review("/validate", &to_privileged).await;
    assert_eq!(denied["allowed"], false);
    assert!(
        message(&denied).contains("denied this Deployment"),
        "{}",
        message(&denied)
    );

    // A finalizer removed from an object admitted under an older policy must go through.
    let mut finalizer_removed = bad.clone();
    finalizer_removed["metadata"]["annotations"] = json!({"note": "cleanup"});
    let cleanup = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&bad),
        ..create(&finalizer_removed, ALICE)
    };
    assert_eq!(webhook.review("/validate", &cleanup).await["allowed"], true);

    // A spec or label change is judged even while the object is being deleted: a pod in its
    // grace period still runs what it says.
    let mut deleting_safe = safe_deployment.clone();
    deleting_safe["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
    let mut deleting_bad = bad.clone();
    deleting_bad["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
    let while_deleting = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&deleting_safe),
        ..create(&deleting_bad, ALICE)
    };
    assert_eq!(
        webhook.review("/validate", &while_deleting).await["allowed"],
        false
    );

    let metrics = webhook.metrics();
    assert_eq!(
        metrics.sum(
            "hubguard_admission_requests_total",
            &[
                ("operation", "UPDATE"),
                ("kind", "Deployment"),
                ("decision", "denied")
            ]
        ),
        2.0
    );
}

#[tokio::test]
async fn resize_is_judged_and_mutate_records_the_identity() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest(GOOD_POD);
    let mut resized = pod.clone();
    resized["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "64", "memory": "1Gi"}, "requests": {"cpu": "64", "memory": "1Gi"}});
    let resize = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&pod),
        subresource: Some(("pods", "resize", "jupyter-alice")),
        ..create(&resized, ALICE)
    };
    let response = webhook.review("/validate", &resize).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("[resources]"), "{response}");

    // /mutate records who the pod is: the requester decides, not the labels.
    let mut unlabelled = manifest("tests/corpus/pass/tenant-own-pod.yaml");
    unlabelled["metadata"]["labels"] = json!({});
    let mutated = webhook.review("/mutate", &create(&unlabelled, ALICE)).await;
    json_patch::patch(&mut unlabelled, &patch_of(&mutated)).unwrap();
    assert_eq!(
        unlabelled["metadata"]["labels"],
        json!({"hubguard.dev/class": "user", "hubguard.dev/tenant": "alice"}),
        "{mutated}"
    );
    let validated = webhook
        .review("/validate", &create(&unlabelled, ALICE))
        .await;
    assert_eq!(validated["allowed"], true, "{validated}");
    // ... and a record that says otherwise is refused.
    unlabelled["metadata"]["labels"]["hubguard.dev/tenant"] = json!("bob");
    let forged = webhook
        .review("/validate", &create(&unlabelled, ALICE))
        .await;
    assert_eq!(forged["allowed"], false);
    assert!(message(&forged).contains("[recordedIdentity]"), "{forged}");
}

#[tokio::test]
async fn subresources_ephemeral_containers_exec_and_delete() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let mut pod = manifest(GOOD_POD);
    pod["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": "ghcr.io/tess-platform/tess-notebook:2026.11.0",
        "securityContext": {"privileged": true}
    }]);
    let ephemeral = ReviewRequest {
        operation: "UPDATE",
        old_object: Some(&pod),
        subresource: Some(("pods", "ephemeralcontainers", "jupyter-alice")),
        ..create(&pod, ALICE)
    };
    let response = webhook.review("/validate", &ephemeral).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("spec.ephemeralContainers[0]"),
        "{}",
        message(&response)
    );

    // Exec by a tenant: this webhook has no cluster credentials, so it cannot confirm the
    // pod is Alice's and refuses, saying why. (The real apiserver test covers the lookup.)
    let exec_options = json!({"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"]});
    let exec = ReviewRequest {
        operation: "CONNECT",
        subresource: Some(("pods", "exec", "jupyter-bob")),
        ..create(&exec_options, ALICE)
    };
    let refused = webhook.review("/validate", &exec).await;
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["status"]["code"], 403);
    assert!(
        message(&refused).contains("cannot confirm that Pod tess-private/jupyter-bob"),
        "{refused}"
    );
    // An eviction deletes the pod: judged the same way, on the pod looked up.
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "jupyter-bob", "namespace": "tess-private"}});
    let evict = ReviewRequest {
        subresource: Some(("pods", "eviction", "jupyter-bob")),
        ..create(&eviction, ALICE)
    };
    let refused = webhook.review("/validate", &evict).await;
    assert_eq!(refused["allowed"], false, "{refused}");
    assert!(
        message(&refused).contains("so eviction is refused")
            && message(&refused).contains("[tenantActions]"),
        "{refused}"
    );

    // The hub (trusted) and a person who is no tenant are left to RBAC.
    for user in [HUB, "oncall@example.org"] {
        let exec = ReviewRequest {
            operation: "CONNECT",
            subresource: Some(("pods", "attach", "jupyter-bob")),
            ..create(&exec_options, user)
        };
        assert_eq!(
            webhook.review("/validate", &exec).await["allowed"],
            true,
            "{user}"
        );
    }

    // A tenant deletes what is recorded as hers, not another's; the hub deletes anyone's.
    let own = manifest("tests/corpus/attack/privileged-pod.yaml");
    let bobs = manifest("tests/fixtures/e2e/bob-notebook.yaml");
    fn delete<'a>(object: &'a Value, user: &'a str) -> ReviewRequest<'a> {
        ReviewRequest {
            operation: "DELETE",
            object: None,
            old_object: Some(object),
            ..create(object, user)
        }
    }
    assert_eq!(
        webhook.review("/validate", &delete(&own, ALICE)).await["allowed"],
        true
    );
    let refused = webhook.review("/validate", &delete(&bobs, ALICE)).await;
    assert_eq!(refused["allowed"], false, "{refused}");
    assert!(
        message(&refused).contains("[tenantActions]")
            && message(&refused).contains("it belongs to tenant bob"),
        "{refused}"
    );
    assert_eq!(
        webhook.review("/validate", &delete(&bobs, HUB)).await["allowed"],
        true
    );
}

#[tokio::test]
async fn a_tenants_service_is_judged_and_deleted_by_her_only() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let own = manifest("tests/corpus/pass/tenant-own-service.yaml");
    let validated = webhook.review("/validate", &create(&own, ALICE)).await;
    assert_eq!(validated["allowed"], true, "{validated}");
    let hub_name = manifest("tests/corpus/attack/service-takes-hub-name.yaml");
    let refused = webhook.review("/validate", &create(&hub_name, ALICE)).await;
    assert_eq!(refused["allowed"], false);
    assert!(message(&refused).contains("[serviceNames]"), "{refused}");
    // The hub's own Service passes as the hub's.
    assert_eq!(
        webhook.review("/validate", &create(&hub_name, HUB)).await["allowed"],
        true
    );
    // Her Service is hers to delete (its selector pins her tenant); the hub's is not.
    let delete = |object| ReviewRequest {
        operation: "DELETE",
        object: None,
        old_object: Some(object),
        ..create(object, ALICE)
    };
    let deleted = webhook.review("/validate", &delete(&own)).await;
    assert_eq!(deleted["allowed"], true, "{deleted}");
    let hub = manifest("tests/corpus/attack/delete-hub-service.yaml");
    let refused = webhook.review("/validate", &delete(&hub)).await;
    assert_eq!(refused["allowed"], false);
    assert!(message(&refused).contains("[tenantActions]"), "{refused}");
}

#[tokio::test]
async fn dry_run_violations_are_counted_apart() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest("tests/corpus/attack/privileged-pod.yaml");
    let request = ReviewRequest {
        dry_run: true,
        ..create(&pod, ALICE)
    };
    let response = webhook.review("/validate", &request).await;
    assert_eq!(
        response["allowed"], false,
        "dry runs are judged like the real thing"
    );
    let metrics = webhook.metrics();
    assert_eq!(
        metrics.sum(
            "hubguard_policy_violations_total",
            &[("rule", "privileged"), ("mode", "dry_run")]
        ),
        1.0
    );
    assert_eq!(
        metrics.sum(
            "hubguard_policy_violations_total",
            &[("rule", "privileged"), ("mode", "enforce")]
        ),
        0.0
    );
}

#[tokio::test]
async fn malformed_bodies_get_a_4xx_and_the_server_keeps_serving() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let mut connection = webhook.connect().await;
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            "not JSON",
            b"{{{".to_vec(),
            400,
            "not an admission.k8s.io AdmissionReview",
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            400,
            "has no request",
        ),
        (
            "wrong shape",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#
                .to_vec(),
            400,
            "not an admission.k8s.io AdmissionReview",
        ),
        (
            "over 3 MiB",
            vec![b' '; 3 * 1024 * 1024 + 1],
            413,
            "length limit",
        ),
    ];
    for (name, body, status, text) in cases {
        if connection.is_closed() {
            connection = webhook.connect().await;
        }
        let (got, body) = connection.post("/validate", body.into()).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got.as_u16(), status, "{name}: {body}");
        assert!(body.contains(text), "{name}: {body}");
    }
    let pod = manifest(GOOD_POD);
    let mut fresh = webhook.connect().await;
    assert_eq!(
        review_on(&mut fresh, "/validate", &create(&pod, HUB)).await["allowed"],
        true
    );
    assert!(
        webhook.metrics().sum(
            "hubguard_admission_requests_total",
            &[("decision", "error")]
        ) >= 3.0
    );
}

#[tokio::test]
async fn http2_is_served() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest(GOOD_POD);
    let mut connection = webhook.client(Protocol::Http2).connect().await.unwrap();
    for _ in 0..3 {
        let response = review_on(&mut connection, "/validate", &create(&pod, HUB)).await;
        assert_eq!(response["allowed"], true);
    }
}

#[tokio::test]
async fn certificate_rotation_mid_traffic_fails_no_request() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let pod = manifest(GOOD_POD);
    let body: bytes::Bytes = serde_json::to_vec(&create(&pod, HUB).to_json())
        .unwrap()
        .into();
    let first_cert = webhook.connect().await.server_certificate().to_vec();

    // Keep-alive connections and fresh ones, without pause, while the Secret rotates.
    let stop = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let client = webhook.client(Protocol::Http1);
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let (mut sent, mut failed) = (0u32, Vec::new());
            let mut connection = client.connect().await.unwrap();
            while Instant::now() < stop && sent < 200_000 {
                if worker % 2 == 1 && sent % 50 == 0 {
                    connection = match client.connect().await {
                        Ok(c) => c,
                        Err(e) => {
                            failed.push(e.to_string());
                            continue;
                        }
                    };
                }
                match connection.post("/validate", body.clone()).await {
                    Ok((status, _)) if status == 200 => {}
                    Ok((status, _)) => failed.push(format!("status {status}")),
                    Err(e) => failed.push(e.to_string()),
                }
                sent += 1;
            }
            (sent, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    crate::support::write_serving(&webhook.dir.0, &webhook.ca);
    let mut total = 0;
    for worker in workers {
        let (sent, failed) = worker.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during rotation: {failed:?}"
        );
        total += sent;
    }
    assert!(total > 100, "traffic flowed: {total}");
    let second_cert = webhook.connect().await.server_certificate().to_vec();
    assert_ne!(
        first_cert, second_cert,
        "new connections get the new certificate"
    );
    assert!(webhook.log().contains("serving certificate reloaded"));
    assert_eq!(
        webhook
            .metrics()
            .sum("hubguard_tls_reload_errors_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn policy_reload_takes_good_files_and_refuses_broken_ones() {
    let webhook = Webhook::start(PRIVATE, &[]);
    let policy_file = webhook.dir.path("policy.yaml");
    let pod = manifest("tests/corpus/attack/privileged-pod.yaml");
    let request = create(&pod, ALICE);
    assert_eq!(
        webhook.review("/validate", &request).await["allowed"],
        false
    );

    // A good change: the same policy with user pods in audit mode.
    let text = std::fs::read_to_string(&policy_file).unwrap();
    let audit = text.replacen(
        "    user:\n      bundle: restricted",
        "    user:\n      mode: audit\n      bundle: restricted",
        1,
    );
    assert_ne!(audit, text, "the preset layout changed; update this test");
    std::fs::write(&policy_file, &audit).unwrap();
    wait_for(|| {
        webhook
            .metrics()
            .sum("hubguard_policy_info", &[("generation", "2")])
            == 1.0
    });
    assert_eq!(webhook.review("/validate", &request).await["allowed"], true);

    // A broken file: refused, counted, logged; generation 2 stays in force.
    std::fs::write(
        &policy_file,
        "apiVersion: hubguard.dev/v1alpha1\nkind: HubguardPolicy\nspec: [",
    )
    .unwrap();
    wait_for(|| {
        webhook
            .metrics()
            .sum("hubguard_policy_reload_errors_total", &[])
            == 1.0
    });
    let metrics = webhook.metrics();
    assert_eq!(
        metrics.sum("hubguard_policy_info", &[("generation", "2")]),
        1.0
    );
    assert_eq!(metrics.matching("hubguard_policy_info", &[]).count(), 1);
    assert_eq!(webhook.review("/validate", &request).await["allowed"], true);
    let log = webhook.log();
    let refusal = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|event| event["level"] == "ERROR")
        .expect("an error event for the refused policy");
    assert!(refusal["message"]
        .as_str()
        .unwrap()
        .contains("policy reload refused"));
    assert!(
        refusal["error"].as_str().unwrap().contains("policy.yaml"),
        "{refusal}"
    );

    // Still refused a moment later: the error is counted once per broken version.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        webhook
            .metrics()
            .sum("hubguard_policy_reload_errors_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn sigterm_drains_the_request_in_flight_then_exits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut webhook = Webhook::start(PRIVATE, &["--shutdown-delay", "0.5"]);
    let pod = manifest(GOOD_POD);
    let body = serde_json::to_vec(&create(&pod, HUB).to_json()).unwrap();

    // Half a request on the wire when SIGTERM arrives; the rest after it.
    let mut stream = webhook.client(Protocol::Http1).connect_tls().await.unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: hubguard\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(webhook.pid(), libc::SIGTERM) }, 0);

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        webhook.get("/readyz").unwrap().0,
        503,
        "not ready while draining"
    );
    stream.write_all(&body[body.len() / 2..]).await.unwrap();
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "the connection closes after the drained response"
    );
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");

    let status = wait_exit(&mut webhook.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", webhook.log());
    assert!(webhook.log().contains("drained; exiting"));
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 10s");
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
