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

/// A validator of `docs/schema/NAME.schema.json`. Its `$ref`s name the other
/// schemas by file (`defs.schema.json#/$defs/…`, `apply.schema.json#/$defs/…`),
/// resolved against the schema's own location as any validator does with the
/// files as shipped.
pub fn validator(name: &str) -> jsonschema::Validator {
    let schema = schema_file(&format!("{name}.schema.json"));
    let uri = |n: &str| format!("file://{}", schema_path(n).display());
    let mut options = jsonschema::options().with_base_uri(uri(&format!("{name}.schema.json")));
    for entry in std::fs::read_dir(schema_path("")).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let other = schema_file(&file);
        jsonschema::meta::validate(&other).unwrap_or_else(|e| panic!("{file}: not a valid JSON Schema: {e}"));
        options = options.with_resource(uri(&file), jsonschema::Resource::from_contents(other).unwrap());
    }
    options.build(&schema).unwrap_or_else(|e| panic!("{name}.schema.json: {e}"))
}

pub fn assert_valid(v: &jsonschema::Validator, name: &str, doc: &Value) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{name} does not follow its schema:\n{}\n{doc:#}", errors.join("\n"));
}
