//! The version-mismatch warning of `register-client` and `register-worker`
//! (`distributed.versions.error_message`, versions.py:97): the newcomer's packages
//! (`versions` of its registration, `get_versions()`) against the scheduler's (here: the
//! graph helper's environment, which runs the user's `distributed`) and every registered
//! worker's. The client shows it as a `VersionMismatchWarning`, the worker logs it.

use rask_protocol::Value;
use std::collections::BTreeSet;

/// Packages whose scheduler version counts (`scheduler_relevant_packages`, versions.py:36:
/// `set(required_packages) | {"lz4", "python"} - {"msgpack"}`, where `-` binds first, so
/// msgpack stays in).
const SCHEDULER_RELEVANT: [&str; 8] = [
    "cloudpickle",
    "dask",
    "distributed",
    "lz4",
    "msgpack",
    "python",
    "toolz",
    "tornado",
];

/// One side's packages: `versions["packages"]`, or `"UNKNOWN"` when it sent no versions.
enum Packages<'a> {
    Known(&'a [(Value, Value)]),
    Unknown,
}

impl<'a> Packages<'a> {
    fn of(versions: &'a Value) -> Self {
        match versions.get("packages") {
            Some(Value::Map(m)) => Packages::Known(m),
            _ => Packages::Unknown,
        }
    }

    /// The package names it adds to the union (`packages.update(x)`: a string adds its
    /// characters, as in Python).
    fn names(&self) -> Vec<String> {
        match self {
            Packages::Known(m) => m
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_string))
                .collect(),
            Packages::Unknown => "UNKNOWN".chars().map(|c| c.to_string()).collect(),
        }
    }

    /// `x.get(pkg, "MISSING")` as `str()` shows it (None for an uninstalled package).
    fn version(&self, pkg: &str) -> String {
        match self {
            Packages::Known(m) => match m.iter().find(|(k, _)| k.as_str() == Some(pkg)) {
                None => "MISSING".to_string(),
                Some((_, Value::Nil)) => "None".to_string(),
                Some((_, v)) => v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{v:?}")),
            },
            Packages::Unknown => "UNKNOWN".to_string(),
        }
    }
}

/// The `warning` field: `""`, or `"Mismatched versions found\n\n"` and the table.
pub fn mismatch_warning(
    scheduler: &Value,
    workers: &[&Value],
    source: &Value,
    source_name: &str,
) -> String {
    let source = Packages::of(source);
    let scheduler = Packages::of(scheduler);
    let workers: Vec<Packages<'_>> = workers.iter().map(|w| Packages::of(w)).collect();
    let mut packages = BTreeSet::new();
    packages.extend(source.names());
    packages.extend(scheduler.names());
    for w in &workers {
        packages.extend(w.names());
    }
    let mut rows = Vec::new();
    for pkg in &packages {
        let mut versions = BTreeSet::new();
        let scheduler_version = scheduler.version(pkg);
        if SCHEDULER_RELEVANT.contains(&pkg.as_str()) {
            versions.insert(scheduler_version.clone());
        }
        let source_version = source.version(pkg);
        versions.insert(source_version.clone());
        let worker_versions: BTreeSet<String> = workers.iter().map(|w| w.version(pkg)).collect();
        versions.extend(worker_versions.iter().cloned());
        if versions.len() <= 1 {
            continue;
        }
        // one version: itself; none: None; several: the set's repr (sorted here; Python's
        // set order is arbitrary)
        let workers_cell = match worker_versions.len() {
            0 => "None".to_string(),
            1 => worker_versions.into_iter().next().unwrap_or_default(),
            _ => format!(
                "{{{}}}",
                worker_versions
                    .iter()
                    .map(|v| if v == "None" {
                        v.clone()
                    } else {
                        format!("'{v}'")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        rows.push([pkg.clone(), source_version, scheduler_version, workers_cell]);
    }
    if rows.is_empty() {
        return String::new();
    }
    let header = [
        "Package".to_string(),
        source_name.to_string(),
        "Scheduler".to_string(),
        "Workers".to_string(),
    ];
    format!(
        "Mismatched versions found\n\n{}",
        asciitable(&header, &rows)
    )
}

/// `distributed.utils.asciitable` (utils.py:1099).
fn asciitable(columns: &[String; 4], rows: &[[String; 4]]) -> String {
    let len = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| len(&r[i]))
                .max()
                .unwrap_or(0)
                .max(len(&columns[i]))
        })
        .collect();
    let row = |cells: &[String; 4]| {
        let mut line = String::from("|");
        for (cell, w) in cells.iter().zip(&widths) {
            let pad = w.saturating_sub(len(cell));
            line.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
        }
        line
    };
    let bar = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let data: Vec<String> = rows.iter().map(row).collect();
    [bar.clone(), row(columns), bar.clone(), data.join("\n"), bar].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(pkgs: &[(&str, Option<&str>)]) -> Value {
        Value::map([(
            "packages",
            Value::map(
                pkgs.iter()
                    .map(|(k, v)| (*k, v.map(Value::from).unwrap_or(Value::Nil))),
            ),
        )])
    }

    #[test]
    fn same_versions_no_warning() {
        let v = versions(&[("distributed", Some("2026.8.0")), ("numpy", None)]);
        assert_eq!(mismatch_warning(&v, &[&v], &v, "Client"), "");
    }

    #[test]
    fn a_mismatch_is_the_stock_table() {
        // as distributed.versions.error_message prints it for these inputs
        let sched = versions(&[("distributed", Some("2026.8.0")), ("numpy", Some("2.0"))]);
        let client = versions(&[("distributed", Some("2024.1.0")), ("numpy", Some("2.0"))]);
        let w = mismatch_warning(&sched, &[], &client, "Client");
        assert_eq!(
            w,
            "Mismatched versions found\n\n\
             +-------------+----------+-----------+---------+\n\
             | Package     | Client   | Scheduler | Workers |\n\
             +-------------+----------+-----------+---------+\n\
             | distributed | 2024.1.0 | 2026.8.0  | None    |\n\
             +-------------+----------+-----------+---------+"
        );
    }
}
