//! The secured hubs' pods as upstream's own software builds them: KubeSpawner 7 from PyPI
//! (pinned, `scripts/pyenv`) makes the user pods of each hub's layered values, for users and
//! servers whose names it has to make safe; `hubguard check` judges each as the hub. Where
//! z2jh's chart turns values into KubeSpawner settings, a model stands in
//! (`tests/upstream/kubespawner_pods.py` says how it was checked).

use serde_json::{json, Value};

use crate::hub_charts::{check, defaults_beyond_metadata, layered_values};
use crate::support::upstream::kubespawner;
use hubguard_policy::kubespawner as model;

/// Users and servers whose names KubeSpawner keeps, cuts, hashes or escapes.
const USERS: [&str; 11] = [
    "alice",
    "1337coder",
    "Alice.Smith@example.org",
    "UPPER",
    "dots.in.name",
    "_underscore",
    "ünïcødé",
    "alice--gpu",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a-very-long-institutional-login-name-of-a-researcher@observatory.example.edu",
    "x",
];
const SERVERS: [&str; 4] = [
    "",
    "gpu",
    "Analysis 2",
    "a-long-server-name-for-a-long-running-analysis",
];

#[test]
fn hubguard_names_homes_and_labels_as_kubespawner_does() {
    let templates = [
        "claim-{user_server}",
        "claim-{username}",
        "claim-{username}{servername}",
        "home-{username}--{servername}-",
    ];
    let mut cases = Vec::new();
    for template in templates {
        for user in USERS {
            for server in SERVERS {
                cases.push(json!([template, user, server]));
            }
        }
    }
    let answers = kubespawner(&json!({ "names": cases }));
    let answers = answers.as_array().expect("a list");
    assert_eq!(answers.len(), cases.len());
    let mut differ = Vec::new();
    for (case, answer) in cases.iter().zip(answers) {
        let (template, user, server) = (
            case[0].as_str().unwrap(),
            case[1].as_str().unwrap(),
            case[2].as_str().unwrap(),
        );
        let ours = json!([
            model::expand(template, user, server),
            model::username_label(user),
            model::servername_label(server),
        ]);
        if &ours != answer {
            differ.push(format!(
                "{template} {user:?} {server:?}: KubeSpawner {answer}, hubguard {ours}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
    eprintln!("{} names agree with KubeSpawner 7.0.0", cases.len());
}

/// The request for each hub's user pods: every user on every server.
fn pods_request(values: &Value, deployment: &str) -> Value {
    let servers: Vec<Value> = USERS
        .iter()
        .flat_map(|u| SERVERS.iter().map(move |s| json!([u, s])))
        .collect();
    json!({
        "values": values["jupyterhub"],
        "namespace": deployment,
        "release": deployment,
        "servers": servers,
    })
}

#[test]
fn kubespawners_user_pods_pass_for_every_user_and_server() {
    for deployment in ["tess-public", "tess-private"] {
        let values = layered_values(deployment, "prod");
        let built = kubespawner(&pods_request(&values, deployment));
        let hub = format!("system:serviceaccount:{deployment}:hub");
        let mut refused = Vec::new();
        let mut homes = 0;
        for entry in built.as_array().expect("a list") {
            let pod = &entry["pod"];
            let (allowed, mutations) = check(deployment, &hub, pod);
            let defaults = defaults_beyond_metadata(&mutations);
            if !allowed || !defaults.is_empty() {
                refused.push(format!(
                    "{} / {:?}: allowed {allowed}, defaults {defaults:?}",
                    entry["user"], entry["server"]
                ));
            }
            homes += pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["persistentVolumeClaim"]["claimName"] == entry["pvc_name"])
                .count();
        }
        assert!(
            refused.is_empty(),
            "{deployment}: KubeSpawner's pods refused or needing defaults:\n{}",
            refused.join("\n")
        );
        let expected_homes = if deployment == "tess-private" {
            USERS.len() * SERVERS.len()
        } else {
            0
        };
        assert_eq!(
            homes, expected_homes,
            "{deployment}: pods mounting their home"
        );
        eprintln!(
            "{deployment}: {} KubeSpawner pods allowed as the hub",
            USERS.len() * SERVERS.len()
        );
    }
}

#[test]
fn kubespawners_pods_with_hostile_settings_are_refused() {
    let deployment = "tess-private";
    let hub = format!("system:serviceaccount:{deployment}:hub");
    let values = layered_values(deployment, "prod");
    // Settings a profile's kubespawner_override (or a hub admin's mistake) can give one pod,
    // each through KubeSpawner's own code path.
    let hostile: [(&str, Value); 4] = [
        ("privileged", json!({"privileged": true})),
        (
            "another user's home",
            json!({"volumes": [{"name": "other", "persistentVolumeClaim": {"claimName": "claim-alice"}}], "volume_mounts": [{"name": "other", "mountPath": "/other"}]}),
        ),
        (
            "host path",
            json!({"volumes": [{"name": "host", "hostPath": {"path": "/"}}], "volume_mounts": [{"name": "host", "mountPath": "/host"}]}),
        ),
        (
            "root",
            json!({"container_security_context": {"runAsUser": 0}}),
        ),
    ];
    for (what, settings) in hostile {
        let mut request = pods_request(&values, deployment);
        request["servers"] = json!([["1337coder", ""]]);
        let mut config = request["values"]["hub"]["config"]["KubeSpawner"].clone();
        for (key, value) in settings.as_object().unwrap() {
            config[key] = value.clone();
        }
        request["values"]["hub"]["config"]["KubeSpawner"] = config;
        let built = kubespawner(&request);
        let pod = &built[0]["pod"];
        let (allowed, _) = check(deployment, &hub, pod);
        assert!(
            !allowed,
            "KubeSpawner's pod with {what} was allowed: {pod:#}"
        );
    }
}
