//! The registry import format is documented as a JSON Schema
//! (`gateway/registry-import.schema.json`) with an example file
//! (`gateway/examples/people.json`). The example imports; the schema names
//! exactly the fields the importer takes; a bad file gets one clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use estafette_gateway::config::GatewayConfig;
use estafette_gateway::registry;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_pki::NodeKind;
use estafette_relay::testkit::TestFederation;

fn read_json(path: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The fields serde accepts for the object that `wrap` puts a stray field
/// into: read from its own "expected one of" message.
fn accepted_fields(
    trust: &estafette_spec::TrustList,
    wrap: impl Fn(serde_json::Value) -> serde_json::Value,
) -> BTreeSet<String> {
    let stray = serde_json::json!({ "zzz_not_a_field": 1 });
    let err = registry::parse_import(&wrap(stray).to_string(), trust)
        .expect_err("an unknown field is refused")
        .to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    list.split(',')
        .map(|f| {
            f.trim()
                .trim_matches('`')
                .split('`')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

fn schema_fields(schema: &serde_json::Value, def: &str) -> BTreeSet<String> {
    schema["$defs"][def]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_schema_and_the_example_say_what_the_importer_takes() {
    let fed = TestFederation::new(&[("home1.demo", NodeKind::Home)], &["home1.demo"]);
    let trust = fed.trust();
    let schema = read_json("registry-import.schema.json");
    let example = read_json("examples/people.json");

    let people = registry::parse_import(&example.to_string(), &trust).unwrap();
    assert_eq!(people.len(), 3, "the example imports");

    let person = |extra: serde_json::Value| {
        let mut p = serde_json::json!({ "recipient": "bsn:999999990" });
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!([p])
    };
    assert_eq!(
        accepted_fields(&trust, person),
        schema_fields(&schema, "person")
    );
    let address = |extra: serde_json::Value| {
        let mut a = serde_json::json!({ "street_lines": ["x"], "postal_code": "1", "city": "y", "country": "NL" });
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        person(serde_json::json!({ "postal_address": a }))
    };
    assert_eq!(
        accepted_fields(&trust, address),
        schema_fields(&schema, "postal_address")
    );
    let channel = |extra: serde_json::Value| {
        let mut c =
            serde_json::json!({ "kind": "email", "address": "a@example.nl", "state": "verified" });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        person(serde_json::json!({ "contact_channels": [c] }))
    };
    assert_eq!(
        accepted_fields(&trust, channel),
        schema_fields(&schema, "contact_channel")
    );
    // What the schema requires is what the importer requires.
    assert_eq!(
        schema["$defs"]["person"]["required"],
        serde_json::json!(["recipient"])
    );
    let missing = registry::parse_import("[{}]", &trust)
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("recipient"), "{missing}");
}

#[test]
fn a_bad_import_file_gets_one_clear_error() {
    let fed = TestFederation::new(&[("home1.demo", NodeKind::Home)], &["home1.demo"]);
    let mut config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), fed.gateway.config.clone());
    let db = TestStore::from_env();
    config.store = db.settings.clone();
    let config_path = fed.tmp.path().join("gateway.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let bad = fed.tmp.path().join("people.json");
    std::fs::write(
        &bad,
        r#"[{ "recipient": "bsn:999999990", "home_node": "home1.demo", "activ": true }]"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_estafette-gateway"))
        .args(["registry", "import", "--config"])
        .arg(&config_path)
        .arg("--file")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field `activ`"), "{stderr}");
    assert_eq!(
        stderr.matches("unknown field").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains("registry-import.schema.json"),
        "points at the format: {stderr}"
    );
}
