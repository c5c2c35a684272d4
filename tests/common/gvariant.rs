//! A GVariant writer for the runtime records ostree leaves in /run
//! (`/run/ostree-booted`, `/run/ostree/staged-deployment`): dictionaries `a{sv}`
//! of booleans, strings, `(tt)` pairs and nested dictionaries, in native byte
//! order as ostree-prepare-root writes them. Written from the GVariant
//! specification, independently of the decoder under test.

pub enum Value {
    Bool(bool),
    Str(String),
    DevIno(u64, u64),
    Dict(Vec<(String, Value)>),
}

/// Width of the framing offsets of a container whose body is `body` bytes and
/// which holds `n` offsets: the smallest that can address the whole container.
fn width(body: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    [1usize, 2, 4, 8].into_iter().find(|&w| w == 8 || body + n * w < (1usize << (8 * w))).unwrap()
}

fn push_offset(out: &mut Vec<u8>, v: usize, w: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..w]);
}

fn pad(out: &mut Vec<u8>, align: usize) {
    while out.len() % align != 0 {
        out.push(0);
    }
}

/// The value's bytes and type string.
fn value(v: &Value) -> (Vec<u8>, &'static str) {
    match v {
        Value::Bool(b) => (vec![u8::from(*b)], "b"),
        Value::Str(s) => {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            (b, "s")
        }
        Value::DevIno(dev, ino) => {
            let mut b = dev.to_ne_bytes().to_vec();
            b.extend_from_slice(&ino.to_ne_bytes());
            (b, "(tt)")
        }
        Value::Dict(entries) => (dict(entries), "a{sv}"),
    }
}

/// Serialises an `a{sv}`.
pub fn dict(entries: &[(String, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut ends = Vec::new();
    for (key, v) in entries {
        pad(&mut body, 8);
        let mut entry = key.as_bytes().to_vec();
        entry.push(0);
        let key_end = entry.len();
        pad(&mut entry, 8);
        let (bytes, ty) = value(v);
        entry.extend_from_slice(&bytes);
        entry.push(0);
        entry.extend_from_slice(ty.as_bytes());
        let w = width(entry.len(), 1);
        push_offset(&mut entry, key_end, w);
        body.extend_from_slice(&entry);
        ends.push(body.len());
    }
    let w = width(body.len(), ends.len());
    for e in ends {
        push_offset(&mut body, e, w);
    }
    body
}

/// `/run/ostree-booted` of a composefs boot of the deployment at `(dev, ino)`.
pub fn composefs_booted(dev: u64, ino: u64, transient_etc: Option<&str>) -> Vec<u8> {
    let mut e = vec![
        ("backing-root-device-inode".to_string(), Value::DevIno(dev, ino)),
        ("composefs".to_string(), Value::Bool(true)),
        ("sysroot-ro".to_string(), Value::Bool(true)),
    ];
    if let Some(t) = transient_etc {
        e.push(("transient-etc".to_string(), Value::Str(t.to_string())));
    }
    dict(&e)
}

/// `/run/ostree/staged-deployment` naming `CHECKSUM.SERIAL`.
pub fn staged_deployment(name: &str, osname: &str) -> Vec<u8> {
    dict(&[
        (
            "target".to_string(),
            Value::Dict(vec![
                ("name".to_string(), Value::Str(name.to_string())),
                ("osname".to_string(), Value::Str(osname.to_string())),
                ("bootcsum".to_string(), Value::Str("0".repeat(64))),
            ]),
        ),
        ("locked".to_string(), Value::Bool(false)),
    ])
}
