//! `Key::py_str` and `Key::py_hash` against CPython 3.11 (tests/fixtures/keys.json, written
//! by `gen_cases.py fixtures` under PYTHONHASHSEED=0).

use rask_order::{HashSecret, Key};
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn decode(v: &Value) -> Key {
    let (tag, x) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("tagged key");
    match tag.as_str() {
        "s" => Key::Str(x.as_str().expect("str").to_owned()),
        "b" => Key::Bytes(hex(x.as_str().expect("hex"))),
        "i" => Key::Int(x.as_str().expect("int").parse().expect("i128")),
        "f" => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hex(x.as_str().expect("hex")));
            Key::Float(f64::from_le_bytes(b))
        }
        "t" => Key::Tuple(x.as_array().expect("tuple").iter().map(decode).collect()),
        t => panic!("bad tag {t}"),
    }
}

#[test]
fn str_and_hash_match_python() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys.json");
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("keys.json")).expect("json");
    let seed = data["hashseed"].as_u64().expect("hashseed") as u32;
    let secret = HashSecret::from_seed(seed);
    let keys = data["keys"].as_array().expect("keys");
    assert!(keys.len() > 300);
    let mut bad = Vec::new();
    for k in keys {
        let key = decode(&k["key"]);
        let want_str = k["str"].as_str().expect("str");
        let want_hash: i64 = k["hash"].as_str().expect("hash").parse().expect("i64");
        if key.py_str() != want_str {
            bad.push(format!("str: python {want_str:?} rust {:?}", key.py_str()));
        }
        if key.py_hash(&secret) != want_hash {
            bad.push(format!(
                "hash of {want_str:?}: python {want_hash} rust {}",
                key.py_hash(&secret)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn hash_secret_from_seed() {
    // PYTHONHASHSEED=0 disables randomization
    assert_eq!(HashSecret::from_seed(0), HashSecret { k0: 0, k1: 0 });
    assert_ne!(HashSecret::from_seed(1), HashSecret::from_seed(2));
}
