//! The JSON Schemas of docs/schema/, as validators of real outputs.

use serde_json::Value;

fn schema_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema").join(name)
}

fn schema_file(name: &str) -> Value {
    let path = schema_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A validator of `docs/schema/NAME.schema.json`. Its `$ref`s name the shared
/// definitions by file (`defs.schema.json#/$defs/…`), resolved against the
/// schema's own location as any validator does with the files as shipped.
pub fn validator(name: &str) -> jsonschema::Validator {
    let defs = schema_file("defs.schema.json");
    let schema = schema_file(&format!("{name}.schema.json"));
    for s in [&defs, &schema] {
        jsonschema::meta::validate(s).unwrap_or_else(|e| panic!("{name}: not a valid JSON Schema: {e}"));
    }
    let uri = |n: &str| format!("file://{}", schema_path(n).display());
    jsonschema::options()
        .with_base_uri(uri(&format!("{name}.schema.json")))
        .with_resource(uri("defs.schema.json"), jsonschema::Resource::from_contents(defs).unwrap())
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}.schema.json: {e}"))
}

pub fn assert_valid(v: &jsonschema::Validator, name: &str, doc: &Value) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{name} does not follow its schema:\n{}\n{doc:#}", errors.join("\n"));
}
