//! Task groups (`TaskGroup`, `key_split_group`): which group a key belongs to, what the
//! root-task test reads of a group, and what its prefix's counters need when it goes.

use crate::types::WorkerId;
use rask_protocol::Key;
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// `TaskGroup`, reduced to what `is_rootish` and the prefix counters read.
#[derive(Debug, Default, Clone)]
pub struct Group {
    /// tasks of the group the scheduler knows (`len(tg)`)
    pub size: usize,
    /// groups its tasks depend on (`tg.dependencies`)
    pub dependencies: FxHashSet<Arc<str>>,
    /// its prefix (an index into `Prefixes`)
    pub prefix: u32,
    /// its tasks forgotten so far (`tg.states["forgotten"]`)
    pub forgotten: i64,
    /// bytes of results its tasks produced (`tg.nbytes_total`)
    pub nbytes_total: i64,
    /// its tasks released or waiting (`tg.states["released"] + tg.states["waiting"]`)
    pub runnable: i64,
    /// without queuing, the worker its last root-ish task went to (`tg.last_worker`)
    pub last_worker: Option<WorkerId>,
    /// how many more of its root-ish tasks that worker gets (`tg.last_worker_tasks_left`)
    pub last_worker_tasks_left: i64,
}

/// `distributed.utils.key_split_group`: the task group a key belongs to. `prefix` is the
/// key's `key_split`, which is what a plain string key's group is.
pub fn key_split_group(key: &Key, prefix: &Arc<str>) -> Arc<str> {
    match key {
        Key::Tuple(items) => match items.first() {
            Some(Key::Str(s)) => s.clone(),
            Some(other) => other.to_string().into(),
            None => "Other".into(),
        },
        Key::Str(s) => str_group(s).unwrap_or_else(|| prefix.clone()),
        Key::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => str_group(s).unwrap_or_else(|| prefix.clone()),
            Err(_) => "Other".into(),
        },
        Key::Int(_) | Key::Float(_) => "Other".into(),
    }
}

/// The string cases of `key_split_group` that are not `key_split`.
fn str_group(s: &str) -> Option<Arc<str>> {
    if s.starts_with('(') {
        let first = s.split(',').next().unwrap_or(s);
        return Some(first.trim_matches(|c| "()\"'".contains(c)).into());
    }
    if s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some("data".into());
    }
    if s.starts_with('<') {
        let word = s.trim_matches(|c| c == '<' || c == '>');
        let word = word.split_whitespace().next().unwrap_or("");
        return Some(word.rsplit('.').next().unwrap_or(word).into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(key: Key, prefix: &str) -> String {
        key_split_group(&key, &Arc::from(prefix)).to_string()
    }

    #[test]
    fn groups_as_dask_names_them() {
        // the doctests of distributed.utils.key_split_group
        let tuple = Key::Tuple(vec![Key::str("x-2"), Key::Int(1)].into());
        assert_eq!(group(tuple, "x"), "x-2");
        assert_eq!(group(Key::str("('x-2', 1)"), "x"), "x-2");
        assert_eq!(
            group(Key::str("ae05086432ca935f6eba409a8ecd4896"), "data"),
            "data"
        );
        assert_eq!(
            group(
                Key::str("<module.submodule.myclass object at 0xdaf372"),
                "?"
            ),
            "myclass"
        );
        assert_eq!(group(Key::str("x-1"), "x"), "x");
        assert_eq!(group(Key::Int(3), "3"), "Other");
    }
}
