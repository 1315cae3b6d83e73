//! The task table: tasks by id, in fixed-size chunks (generic, so it needs nothing of
//! `state`).
//!
//! A `Vec<Option<Task>>` grows by doubling, and its growth copies every task it holds: at a
//! million tasks that is half a gigabyte moved in one turn of the state task (0.5 s, while
//! every other client waits). Chunks never move once made, so adding a task costs the same
//! at any size, and an id is still an index (chunk, then place in it).

use crate::types::TaskId;

/// Slots per chunk: a chunk is a few hundred KiB, small beside what a big graph adds per
/// turn and large enough that the chunk list stays in cache.
const CHUNK: usize = 1 << 10;

/// Slots for tasks; a slot is empty once its task is forgotten and may be filled again.
#[derive(Debug)]
pub(crate) struct Table<T> {
    chunks: Vec<Vec<Option<T>>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { chunks: Vec::new() }
    }
}

fn place(id: TaskId) -> (usize, usize) {
    let i = id.0 as usize;
    (i / CHUNK, i % CHUNK)
}

impl<T> Table<T> {
    /// The task in slot `id`, if any.
    pub(crate) fn get(&self, id: TaskId) -> Option<&T> {
        let (c, i) = place(id);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    /// The task in slot `id`, mutably.
    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut T> {
        let (c, i) = place(id);
        self.chunks.get_mut(c)?.get_mut(i)?.as_mut()
    }

    /// A new slot at the end, holding `task`.
    pub(crate) fn push(&mut self, task: T) -> TaskId {
        let id = TaskId(u32::try_from(self.slots()).expect("more than 2^32 task slots"));
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(Some(task)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(Some(task));
                self.chunks.push(chunk);
            }
        }
        id
    }

    /// Fills the empty slot `id` (one [`Self::push`] made and [`Self::take`] emptied).
    pub(crate) fn put(&mut self, id: TaskId, task: T) {
        let (c, i) = place(id);
        self.chunks[c][i] = Some(task);
    }

    /// Empties slot `id`, returning its task.
    pub(crate) fn take(&mut self, id: TaskId) -> Option<T> {
        let (c, i) = place(id);
        self.chunks.get_mut(c)?.get_mut(i)?.take()
    }

    /// Every slot, empty or not.
    fn slots(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// Drops every task and slot.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
    }

    /// The tasks, by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TaskId, &T)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (TaskId(i as u32), t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(i: usize) -> String {
        format!("t-{i}")
    }

    #[test]
    fn ids_are_places_across_chunks() {
        let mut t = Table::default();
        let n = 2 * CHUNK + 3;
        let ids: Vec<TaskId> = (0..n).map(|i| t.push(task(i))).collect();
        assert_eq!(ids, (0..n as u32).map(TaskId).collect::<Vec<_>>());
        let last = TaskId(n as u32 - 1);
        assert_eq!(t.get(last).unwrap(), &task(n - 1));
        assert!(t.get(TaskId(n as u32)).is_none());
        let edge = TaskId(CHUNK as u32);
        assert_eq!(t.take(edge).unwrap(), task(CHUNK));
        assert!(t.get(edge).is_none());
        assert_eq!(t.iter().count(), n - 1);
        t.put(edge, task(7));
        assert_eq!(t.get_mut(edge).unwrap(), &mut task(7));
        // a push after an emptied slot still takes a new one
        assert_eq!(t.push(task(0)), TaskId(n as u32));
        t.clear();
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.push(task(0)), TaskId(0));
    }
}
